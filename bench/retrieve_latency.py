"""/retrieve latency over HTTP, per mode, against a running or freshly started `sluice serve`.

Starts `python -m sluice serve` on a free loopback port over SLUICE_DATA_DIR (an index built by
`bench/ingest_docs.sh`), sends 100 distinct queries per mode one at a time after 5 warm-ups,
and prints the median and p95 of the client-side latency and of the server's search stage.

    SLUICE_DATA_DIR=/path/to/data .venv/bin/python bench/retrieve_latency.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

TOPICS = [
    "package",
    "network",
    "kernel",
    "install",
    "table",
    "email",
    "duck",
    "PDF",
    "python class",
    "regular expression",
    "json",
    "sqlite",
    "filesystem",
    "security update",
    "mirror",
    "apt",
    "debian release",
    "bug report",
    "maintainer",
    "OCR",
    "winter sports",
    "stanley cup",
    "presentation slide",
    "layout",
    "license",
]
TEMPLATES = ["how to {}", "{} configuration", "what is {}", "{} error"]
QUERIES = [t.format(topic) for topic in TOPICS for t in TEMPLATES]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=60) as client:
            print("| mode | queries | median ms | p95 ms | server search median ms |")
            print("|---|---:|---:|---:|---:|")
            for mode in ("hybrid", "dense", "bm25"):
                for query in QUERIES[:5]:
                    client.post("/retrieve", json={"query": query, "mode": mode})
                latencies, search = [], []
                for query in QUERIES:
                    started = time.perf_counter()
                    response = client.post("/retrieve", json={"query": query, "mode": mode})
                    latencies.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                    search.append(response.json()["timings_ms"]["search_ms"])
                print(
                    f"| {mode} | {len(QUERIES)} | {statistics.median(latencies):.1f} "
                    f"| {_p95(latencies):.1f} | {statistics.median(search):.2f} |"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
