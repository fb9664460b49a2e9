"""`/retrieve` while another process ingests ≥ 100,000 chunks into the same data dir: latency
per 5-second window, before and after optimising segments off the serving path.

    .venv/bin/python bench/serve_during_ingest.py DATA_DIR [--chunks 100000]
        [--baseline-src OLD_TREE] [--clients 4] [--work-dir DIR]

DATA_DIR holds a served index built beforehand (`bench/ingest_docs.sh` builds the 70 shared
documents'). For each source tree (`--baseline-src`, then this one), on a fresh copy of it:
`sluice serve` starts first, so it owns the shards; `--clients` threads send distinct hybrid
queries back to back; then `bench/scale.py`'s ingest phase (a synthetic corpus through the real
pipeline, vectors from a feature-hashing embedder: see that file) writes ~N chunks into another
index of the same data dir from another process, through the API's process. Every answer is
recorded from the ingest's start to its end; the table gives, per 5-second window, the
requests, p50, p99, max and errors, and a line sums the whole ingest. What is measured is the
API's process at the engine's work (upserts, and the optimisation of each full segment), not
the model: the served index answers with its own embedder as `sluice serve` always does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.concurrency import QUERIES  # noqa: E402

WINDOW_S = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(data_dir: Path, tree: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(
        os.environ,
        SLUICE_DATA_DIR=str(data_dir),
        SLUICE_RESULT_CACHE_ENTRIES="0",
        SLUICE_QUERY_EMBEDDING_CACHE_ENTRIES="0",
        SLUICE_QUERY_LOG="false",
        PYTHONPATH=str(tree),
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


class Load:
    """Client threads asking hybrid queries back to back, each answer timed and kept."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.answers: list[tuple[float, float, int]] = []  # (started, seconds, status)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self, offset: int) -> None:
        with httpx.Client(timeout=120) as http:
            i = offset * 11
            while not self.stop.is_set():
                body = {"query": QUERIES[i % len(QUERIES)], "top_k": 10}
                started = time.monotonic()
                try:
                    status = http.post(f"{self.url}/retrieve", json=body).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.answers.append((started, time.monotonic() - started, status))
                i += 1

    def finish(self) -> list[tuple[float, float, int]]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return self.answers


def _ingest(data_dir: Path, corpus: Path, tree: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(tree / "bench" / "scale.py"),
            "--phase",
            "ingest",
            "--data-dir",
            str(data_dir),
            "--corpus",
            str(corpus),
        ],
        env=dict(os.environ, PYTHONPATH=str(tree)),
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _windows(answers: list[tuple[float, float, int]], start: float, end: float) -> list[str]:
    rows = []
    edge = start
    while edge < end:
        inside = [(s, d, c) for s, d, c in answers if edge <= s < edge + WINDOW_S]
        if inside:
            ms = np.array([d for _, d, _ in inside]) * 1000
            rows.append(
                f"| {edge - start:5.0f} | {len(inside)} | {np.percentile(ms, 50):.0f} "
                f"| {np.percentile(ms, 99):.0f} | {ms.max():.0f} "
                f"| {sum(c != 200 for _, _, c in inside)} |"
            )
        edge += WINDOW_S
    return rows


def run(label: str, base: Path, tree: Path, corpus: Path, work: Path, clients: int) -> None:
    data_dir = work / f"data-{label}"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(base, data_dir, ignore=shutil.ignore_patterns("owner.*"))
    server, url = _serve(data_dir, tree)
    try:
        load = Load(url, clients)
        time.sleep(10)  # past the clients' own start
        start = time.monotonic()
        writer = _ingest(data_dir, corpus, tree)
        out, _ = writer.communicate()
        end = time.monotonic()
        answers = [a for a in load.finish() if start <= a[0] < end]
    finally:
        server.terminate()
        server.wait(timeout=60)
    chunks = out.strip().splitlines()[-1] if out.strip() else "(no report)"
    print(f"\n### {label}: the ingest ({writer.returncode}, {end - start:.0f} s): {chunks[:160]}")
    print("| s | requests | p50 ms | p99 ms | max ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("\n".join(_windows(answers, start, end)))
    ms = np.array([d for _, d, _ in answers]) * 1000
    window_p99 = [
        float(np.percentile(np.array([d for s, d, _ in answers if e <= s < e + WINDOW_S]), 99))
        for e in np.arange(start, end, WINDOW_S)
        if any(e <= s < e + WINDOW_S for s, _, _ in answers)
    ]
    worst = max(window_p99, default=0.0)
    over = sum(p99 > 0.25 for p99 in window_p99)
    print(
        f"\nwhole ingest: {len(ms)} requests, p50 {np.percentile(ms, 50):.0f} ms, p99 "
        f"{np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms, over 1 s: {(ms > 1000).sum()}, "
        f"worst window p99 {worst * 1000:.0f} ms, windows with p99 > 250 ms: {over} of "
        f"{len(window_p99)}, errors {sum(c != 200 for _, _, c in answers)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--work-dir", type=Path, help="kept, with its corpus, for a rerun")
    args = parser.parse_args()
    from bench.scale import _chunks_per_file, write_corpus

    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="sluice-stall-"))).resolve()
    corpus = work / f"corpus-{args.chunks}"
    if not corpus.is_dir():
        files = max(1, round(args.chunks / _chunks_per_file()))
        write_corpus(corpus, files)
        print(f"corpus: {files:,} files for ~{args.chunks:,} chunks", flush=True)
    trees = [("before", args.baseline_src.resolve())] if args.baseline_src else []
    trees.append(("after", ROOT))
    for label, tree in trees:
        run(label, args.data_dir.resolve(), tree, corpus, work, args.clients)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
