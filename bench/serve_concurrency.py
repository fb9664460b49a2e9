"""Hybrid /retrieve throughput with 1, 2 and 4 clients, and ingest throughput beside the API.

    .venv/bin/python bench/serve_concurrency.py DATA_DIR SECOND_CORPUS [--baseline-src OLD_TREE]

DATA_DIR holds an index built beforehand (`bench/ingest_docs.sh` builds the 70 shared
documents'); each scenario runs on a copy of it. For each client count, that many threads send
distinct hybrid queries back to back for `--seconds`; the table gives queries per second and the
median and p99 latency. Scenarios, side by side in one run:
- `before`: `sluice serve` of an older source tree (`--baseline-src`, a checkout of the commit
  before the embedded store was shared), idle;
- `after, idle`: this tree's `sluice serve`;
- `after, during ingest`: the same while `sluice ingest SECOND_CORPUS` runs into the same data
  dir from another process (through the API's process, which owns the shards).
Then the ingest of SECOND_CORPUS alone, with no API, against the same with this tree's API up and
idle: documents per second and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

QUERIES = [
    "package management with apt",
    "network configuration file",
    "kernel module loading",
    "install from a mirror",
    "table of contents",
    "email attachment",
    "duck species",
    "encrypted PDF",
    "python class definition",
    "regular expression syntax",
    "json encoding",
    "sqlite database",
    "filesystem permissions",
    "security update policy",
    "debian release cycle",
    "bug report template",
    "maintainer responsibilities",
    "winter sports",
    "stanley cup winners",
    "korean text",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(data_dir: Path, source: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, SLUICE_DATA_DIR=str(data_dir))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=source or Path.cwd(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                for query in QUERIES[:5]:  # warm-up
                    httpx.post(f"{url}/retrieve", json={"query": query}, timeout=60)
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise TimeoutError("sluice serve did not become ready")


def _load(url: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(offset: int) -> None:
        nonlocal errors
        with httpx.Client(timeout=60) as http:
            i = offset
            while time.monotonic() < stop:
                started = time.perf_counter()
                answer = http.post(
                    f"{url}/retrieve", json={"query": QUERIES[i % len(QUERIES)], "top_k": 10}
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += answer.status_code != 200
                i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "qps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "errors": errors,
    }


def _ingest(data_dir: Path, corpus: Path) -> tuple[subprocess.Popen[str], float]:
    env = dict(os.environ, SLUICE_DATA_DIR=str(data_dir))
    run = subprocess.Popen(
        [sys.executable, "-m", "sluice", "ingest", str(corpus), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return run, time.perf_counter()


def _copy(base: Path, into: Path) -> Path:
    shutil.copytree(base, into, ignore=shutil.ignore_patterns("owner.*", "*.lock"))
    return into


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("second_corpus", type=Path)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-concurrency-"))
    scenarios: list[tuple[str, Path | None, bool]] = []
    if args.baseline_src:
        scenarios.append(("before (older tree), idle", args.baseline_src.resolve(), False))
    scenarios += [("after, idle", None, False), ("after, during ingest", None, True)]

    print("| server | clients | queries/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for n, (label, source, ingesting) in enumerate(scenarios):
        data_dir = _copy(args.data_dir, work / f"scenario-{n}")
        server, url = _serve(data_dir, source)
        run = None
        try:
            if ingesting:
                run, _ = _ingest(data_dir, args.second_corpus)
                time.sleep(15)  # past the ingest's start-up, into its embedding
            for clients in (1, 2, 4):
                figures = _load(url, clients, args.seconds)
                print(
                    f"| {label} | {clients} | {figures['qps']:.1f} | {figures['p50_ms']:.1f} "
                    f"| {figures['p99_ms']:.1f} | {figures['errors']:.0f} |",
                    flush=True,
                )
            if run is not None and run.poll() is not None:
                print(f"(the ingest finished before the last measurement: exit {run.returncode})")
        finally:
            if run is not None:
                run.wait()
            server.terminate()
            server.wait(timeout=60)

    print("\n| ingest of the second corpus | documents | seconds | documents/s |")
    print("|---|---:|---:|---:|")
    rates = {}
    for label, with_api in (("no API", False), ("API up, idle", True)):
        data_dir = _copy(args.data_dir, work / f"ingest-{label.split()[0]}")
        api = _serve(data_dir, None)[0] if with_api else None
        try:
            run, started = _ingest(data_dir, args.second_corpus)
            out, _ = run.communicate()
            seconds = time.perf_counter() - started
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=60)
        report = json.loads(out)
        rates[label] = report["new"] / seconds
        print(f"| {label} | {report['new']} | {seconds:.1f} | {rates[label]:.2f} |", flush=True)
    print(f"\nratio (API up / no API): {rates['API up, idle'] / rates['no API']:.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
