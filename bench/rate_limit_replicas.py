"""How exact a key's rate limit is across two API replicas on one data dir

Two `sluice serve` processes on one data dir (keys required), a key limited to RATE/s (burst
RATE), and THREADS client threads sending requests at a fixed pace (TARGET/s in all), each
request to the next replica in turn, for SECONDS. Prints what was attempted and admitted per
second, against RATE + burst / SECONDS, the most a shared bucket may admit; separate buckets
per replica would admit about twice that.

    .venv/bin/python bench/rate_limit_replicas.py [--seconds 60] [--target 200] [--postgres]

Builds its own small index (three notes) in a temporary data dir. `--postgres`: the state (keys,
buckets) in a PostgreSQL server the bench starts (`SLUICE_STATE_URL`), as replicas on several
machines would share it; else the data dir's SQLite files, as replicas on one machine do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.access_overhead import make_key, serve  # noqa: E402

RATE = 20
THREADS = 8
NOTES = {
    "pumps.md": "# Pumps\n\nA centrifugal pump moves water with a spinning impeller.\n",
    "solar.md": "# Solar\n\nSolar panels charge the batteries through an inverter.\n",
    "garden.md": "# Garden\n\nWater the tomatoes every morning from the rain tank.\n",
}


def ingest(data_dir: Path, folder: Path, settings: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_DATA_DIR": str(data_dir), **settings}
    command = [sys.executable, "-m", "sluice", "ingest", str(folder), "--json"]
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)


def paced(urls: list[str], key: str, target: float, seconds: float) -> dict[int, int]:
    """THREADS threads, `target` requests a second between them, alternating replicas."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    interval = THREADS / target
    start = time.monotonic()

    def client(n: int) -> None:
        with httpx.Client(timeout=30, headers={"X-API-Key": key}) as http:
            i = 0
            while (due := start + n * interval / THREADS + i * interval) < start + seconds:
                time.sleep(max(0.0, due - time.monotonic()))
                url = urls[(n + i) % len(urls)]
                answer = http.post(f"{url}/retrieve", json={"query": "water pump", "top_k": 3})
                with lock:
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--target", type=float, default=200.0)
    parser.add_argument("--postgres", action="store_true", help="the state in PostgreSQL")
    args = parser.parse_args()
    with ExitStack() as stack:
        settings: dict[str, str] = {}
        if args.postgres:
            from tests.conftest import free_port
            from tests.postgres_server import new_database, postgres_server

            server = stack.enter_context(postgres_server(free_port()))
            settings["SLUICE_STATE_URL"] = new_database(server)
        measure(args.seconds, args.target, settings)


def measure(seconds: float, target: float, settings: dict[str, str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="sluice-rate-"))
    folder = work / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    data_dir = work / "data"
    servers = []
    try:
        ingest(data_dir, folder, settings)
        key = make_key(data_dir, "--tenant", "default", "--rate", f"{RATE}/s", settings=settings)
        servers = [serve(data_dir, port, "required", settings) for port in (8621, 8622)]
        urls = ["http://localhost:8621", "http://localhost:8622"]
        statuses = paced(urls, key, target, seconds)
        attempted = sum(statuses.values()) / seconds
        admitted = statuses.get(200, 0) / seconds
        ceiling = RATE + RATE / seconds
        others = {s: n for s, n in statuses.items() if s not in (200, 429)}
        print(
            f"two replicas, a key limited to {RATE}/s (burst {RATE}), {THREADS} threads for "
            f"{seconds:g} s, state in {'PostgreSQL' if settings else 'SQLite'}: "
            f"attempted {attempted:.1f}/s, admitted {admitted:.2f}/s "
            f"(a shared bucket admits at most {ceiling:.2f}/s; {statuses.get(429, 0)} answered "
            f"429; other statuses: {others})"
        )
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
