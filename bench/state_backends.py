"""Ingest and `/retrieve` with the state in SQLite files (the default) against PostgreSQL.

For each backend, alternated ROUNDS times in one run: a fresh data dir, `sluice ingest` of the
first DOCS documents of a BEIR corpus as files (wall time of the command), then `sluice serve`
with keys required and a key limited to 1000/s, so every request reads and writes its rate
bucket in the state, under CLIENTS threads for SECONDS (p50 and p99 of `/retrieve`, hybrid).
PostgreSQL is a real server started here (tests/postgres_server.py), on this machine.

    .venv/bin/python bench/state_backends.py ../shared/data/beir/scifact [--docs 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.access_overhead import load  # noqa: E402
from bench.ingest_throughput import beir_as_files  # noqa: E402
from tests.conftest import free_port, wait_until_answering  # noqa: E402
from tests.postgres_server import new_database, postgres_server  # noqa: E402

ROUNDS = 2
SECONDS = 20.0


def _env(data_dir: Path, state_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_DATA_DIR"] = str(data_dir)
    if "SLUICE_MODEL_EXPORTS_DIR" in os.environ:
        env["SLUICE_MODEL_EXPORTS_DIR"] = os.environ["SLUICE_MODEL_EXPORTS_DIR"]
    if state_url:
        env["SLUICE_STATE_URL"] = state_url
    return env


def _sluice(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def one(corpus: Path, data_dir: Path, state_url: str | None) -> dict[str, float]:
    env = _env(data_dir, state_url)
    started = time.perf_counter()
    report = json.loads(_sluice(env, "ingest", str(corpus), "--json"))
    ingest_s = time.perf_counter() - started
    key = json.loads(_sluice(env, "keys", "create", "--tenant", "default", "--rate", "1000/s",
                             "--json"))["key"]  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=env | {"SLUICE_AUTH": "required"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{url}/ready", server, 300, "sluice serve")
        load(url, {"Authorization": f"Bearer {key}"}, 3.0)  # warm
        latencies, statuses = load(url, {"Authorization": f"Bearer {key}"}, SECONDS)
    finally:
        server.terminate()
        server.wait(60)
    latencies.sort()
    return {
        "ingest_s": ingest_s,
        "documents": report["new"],
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "requests": float(sum(statuses.values())),
        "not_200": float(sum(v for k, v in statuses.items() if k != 200)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("beir", type=Path)
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgres": []}
    with tempfile.TemporaryDirectory() as scratch, postgres_server(free_port()) as server:
        base = Path(scratch)
        corpus = beir_as_files(args.beir, args.docs, base / "corpus")
        for round_ in range(ROUNDS):
            for backend in ("sqlite", "postgres"):
                url = new_database(server) if backend == "postgres" else None
                results[backend].append(one(corpus, base / f"{backend}-{round_}", url))
                print(backend, round_, results[backend][-1], flush=True)
    print(f"\n{args.docs} documents of {args.beir.name}; medians of {ROUNDS} alternated rounds")
    print("| state | ingest s | /retrieve p50 ms | p99 ms | requests in 20 s | not 200 |")
    print("|---|---|---|---|---|---|")
    for backend, rows in results.items():
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"| {backend} | {median['ingest_s']:.1f} | {median['p50_ms']:.1f} | "
            f"{median['p99_ms']:.1f} | {median['requests']:.0f} | {median['not_200']:.0f} |"
        )
    sqlite, postgres = (statistics.median(r["p50_ms"] for r in results[b]) for b in results)
    ingest = [statistics.median(r["ingest_s"] for r in results[b]) for b in results]
    print(f"postgres / sqlite: ingest {ingest[1] / ingest[0]:.3f}, p50 {postgres / sqlite:.3f}")


if __name__ == "__main__":
    main()
