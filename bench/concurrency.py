"""Concurrent /retrieve against one-at-a-time: throughput, latency, errors and wrong answers.

    .venv/bin/python bench/concurrency.py DATA_DIR [--baseline-src OLD_TREE] [--clients 1 4 16 64]
        [--modes hybrid dense] [--rerank-clients 4] [--seconds 20]

DATA_DIR holds an index built beforehand (`bench/ingest_docs.sh` builds the 70 shared
documents'); each server runs on a copy of it, with the default backend and the result and
query-vector caches off, so every request is computed. For each server and mode, the 40 queries
are first asked one at a time (the reference answers), then from N clients at once for
`--seconds`; each answer is compared with the reference: the same chunks in the same order with
the same scores. The table gives queries per second, p50 and p99 latency, errors (any status but
200, or a connection error) and answers that differ from the reference. `--baseline-src` runs an
older source tree's `sluice serve` side by side (a checkout of an earlier commit).
`--rerank-clients` adds hybrid with rerank on at those client counts, the reranker being the
packaged MiniLM with an untrained head (the shape and speed of a MiniLM-L6 cross-encoder; no
trained one ships offline).
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
import threading
import time
from pathlib import Path
from typing import Any

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
    "how do I report a bug in a package?",
    "what is the social contract",
    "upgrade to a new stable release",
    "configure the boot loader",
    "sending mail from the command line",
    "right to left script",
    "spreadsheet with quarterly figures",
    "presentation slides about the project",
    "building a package from source",
    "who may upload packages to the archive",
    "multi column layout",
    "free software guidelines",
    "mailing list etiquette",
    "setting the locale and keyboard",
    "backports of newer versions",
    "what to do when a disk is full",
    "translate the documentation",
    "secure shell keys",
    "print a document",
    "license of the manual",
]
RERANKER = "sentence-transformers/all-MiniLM-L6-v2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(
    data_dir: Path, source: Path | None, rerank: bool
) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(
        os.environ,
        SLUICE_DATA_DIR=str(data_dir),
        SLUICE_RESULT_CACHE_ENTRIES="0",
        SLUICE_QUERY_EMBEDDING_CACHE_ENTRIES="0",
        SLUICE_QUERY_LOG="false",
    )
    for name in ("SLUICE_EMBEDDING_BACKEND", "SLUICE_RERANK_BACKEND"):
        env.pop(name, None)  # the default backend, as users run it
    if rerank:
        env |= {"SLUICE_RERANKER_MODEL": RERANKER, "SLUICE_RERANK_BUDGET_MS": "60000"}
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
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise TimeoutError("sluice serve did not become ready")


def _body(query: str, mode: str, rerank: bool) -> dict[str, Any]:
    return {"query": query, "mode": mode, "top_k": 10, "rerank": rerank}


def _answer(payload: dict[str, Any]) -> list[tuple[str, float]]:
    return [(hit["chunk_id"], hit["score"]) for hit in payload["hits"]]


def _reference(url: str, mode: str, rerank: bool) -> dict[str, list[tuple[str, float]]]:
    answers = {}
    with httpx.Client(timeout=120) as http:
        for query in QUERIES:
            for _ in range(30):  # a reranker loads in the background: wait for whole answers
                response = http.post(f"{url}/retrieve", json=_body(query, mode, rerank))
                response.raise_for_status()
                if not response.json().get("degraded"):
                    break
                time.sleep(1)
            answers[query] = _answer(response.json())
    return answers


def _load(
    url: str,
    clients: int,
    seconds: float,
    mode: str,
    rerank: bool,
    reference: dict[str, list[tuple[str, float]]],
) -> dict[str, float]:
    latencies: list[float] = []
    errors = differing = 0
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(offset: int) -> None:
        nonlocal errors, differing
        with httpx.Client(timeout=120) as http:
            i = offset
            while time.monotonic() < stop:
                query = QUERIES[i % len(QUERIES)]
                started = time.perf_counter()
                try:
                    response = http.post(f"{url}/retrieve", json=_body(query, mode, rerank))
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += not ok
                    differing += ok and _answer(response.json()) != reference[query]
                i += 7  # each client walks the queries in its own order

    threads = [threading.Thread(target=client, args=(n * 5,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "qps": len(ordered) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "errors": errors,
        "differing": differing,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--modes", nargs="+", default=["hybrid", "dense"])
    parser.add_argument("--rerank-clients", type=int, nargs="*", default=[4])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-concurrency-"))
    trees: list[tuple[str, Path | None]] = []
    if args.baseline_src:
        trees.append(("before", args.baseline_src.resolve()))
    trees.append(("after", None))
    runs = [(mode, False, args.clients) for mode in args.modes]
    if args.rerank_clients:
        runs.append(("hybrid", True, args.rerank_clients))

    print(
        "| server | mode | clients | requests | queries/s | p50 ms | p99 ms | errors | differing |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, (label, source) in enumerate(trees):
        for rerank in sorted({r for _, r, _ in runs}):
            data_dir = work / f"{n}-{rerank}"
            shutil.copytree(args.data_dir, data_dir, ignore=shutil.ignore_patterns("owner.*"))
            server, url = _serve(data_dir, source, rerank)
            try:
                for mode, with_rerank, counts in runs:
                    if with_rerank != rerank:
                        continue
                    reference = _reference(url, mode, rerank)
                    name = f"{mode}+rerank" if rerank else mode
                    for clients in counts:
                        f = _load(url, clients, args.seconds, mode, rerank, reference)
                        print(
                            f"| {label} | {name} | {clients} | {f['requests']:.0f} "
                            f"| {f['qps']:.1f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} "
                            f"| {f['errors']:.0f} | {f['differing']:.0f} |",
                            flush=True,
                        )
            finally:
                server.terminate()
                server.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
