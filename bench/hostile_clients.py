"""A normal client's answers while strangers hold slow bodies and idle connections.

    .venv/bin/python bench/hostile_clients.py DATA_DIR [--src TREE] [--seconds 30]

Starts `sluice serve` on a copy of DATA_DIR (an index built beforehand, e.g. by
`bench/ingest_docs.sh`), caches off, from this tree or from another checkout (`--src`, put
first on PYTHONPATH: the "before" of a change). For each scenario, strangers
(`tests/hostile_clients.py`: slow bodies send a whole head with an invalid key, then one body
byte every 5 s; idle connections send nothing; each reopened as soon as the server closes it)
connect from other loopback addresses, and, once they are all open, one client on 127.0.0.1
sends hybrid queries back to back on one keep-alive connection for `--seconds`. The table gives
the strangers' connections opened per second meanwhile, and that client's requests, answers by
status, connection errors, and latencies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_clients import Strangers  # noqa: E402

QUERIES = [
    "package management with apt",
    "network configuration file",
    "kernel module loading",
    "encrypted PDF",
    "regular expression syntax",
    "security update policy",
    "bug report template",
    "stanley cup winners",
]
# (label, slow bodies, idle connections, addresses for slow bodies, addresses for idle ones)
SCENARIOS = [
    ("no strangers", 0, 0, 1, 1),
    ("16 slow bodies", 16, 0, 16, 1),
    ("140 idle", 0, 140, 1, 10),
    ("16 slow bodies + 140 idle", 16, 140, 16, 10),
    ("16 slow bodies + 140 idle, one address each kind", 16, 140, 1, 1),
    ("600 idle from 20 addresses", 0, 600, 1, 20),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(data_dir: Path, source: Path | None, port: int) -> subprocess.Popen[bytes]:
    # Caches off: every request is computed, as in the probe.
    env = dict(
        os.environ,
        SLUICE_DATA_DIR=str(data_dir),
        SLUICE_RESULT_CACHE_ENTRIES="0",
        SLUICE_QUERY_EMBEDDING_CACHE_ENTRIES="0",
    )
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=source or ROOT,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise TimeoutError("sluice serve did not become ready")


def _client(port: int, seconds: float) -> tuple[Counter[str], list[float]]:
    """Queries back to back on one keep-alive connection (a new one after a failure)."""
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    stop, n = time.monotonic() + seconds, 0
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            answer = client.post("/retrieve", json={"query": QUERIES[n % len(QUERIES)]})
            statuses[str(answer.status_code)] += 1
        except httpx.HTTPError as error:
            statuses[type(error).__name__] += 1
            client.close()
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        latencies.append(1000 * (time.perf_counter() - started))
        n += 1
    client.close()
    return statuses, latencies


def _row(label: str, statuses: Counter[str], latencies: list[float], held: int, rate: float) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    others = {k: v for k, v in statuses.items() if k not in ("200", "503")}
    other = ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "0"
    return (
        f"| {label} | {held} | {rate:.0f} | {sum(statuses.values())} | {statuses['200']} "
        f"| {statuses['503']} "
        f"| {other} | {statistics.median(ordered):.1f} | {p99:.1f} | {ordered[-1]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--src", type=Path, help="the source tree to serve from")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--byte-every-s", type=float, default=5.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-hostile-"))
    data_dir = work / "data"
    shutil.copytree(args.data_dir, data_dir, ignore=shutil.ignore_patterns("owner.*", "*.lock"))
    port = _free_port()
    server = _serve(data_dir, args.src.resolve() if args.src else None, port)
    print(f"server: {'this tree' if args.src is None else args.src}")
    print(
        "| strangers | open when measured | stranger connections/s | requests | 200 | 503 "
        "| other | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )
    try:
        for label, slow, idle, slow_addresses, idle_addresses in SCENARIOS:
            with Strangers(
                port,
                slow_bodies=slow,
                idle=idle,
                byte_every_s=args.byte_every_s,
                slow_addresses=slow_addresses,
                idle_addresses=idle_addresses,
            ) as strangers:
                settle = time.monotonic() + 15  # caps may keep some from ever being open
                while strangers.held() < slow + idle and time.monotonic() < settle:
                    time.sleep(0.1)
                held, opened = strangers.held(), strangers.counts["opened"]
                statuses, latencies = _client(port, args.seconds)
                rate = (strangers.counts["opened"] - opened) / args.seconds
            print(_row(label, statuses, latencies, held, rate), flush=True)
            time.sleep(2)  # the server sees the strangers' connections close
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
