"""What observing `/retrieve` costs, what the caches save, and how big the query log grows.

Three `sluice serve` processes over three copies of one ingested data dir:
  * bare:     no metrics, no query log, no caches;
  * observed: metrics (scraped every 15 s, as Prometheus would) and the query log, no caches;
  * cached:   metrics, query log and both caches.
1. Overhead: one client sends hybrid queries, each a different query of the dataset, to bare and
   observed in turn (which goes first alternates), ROUNDS rounds of ROUND_S seconds; p50/p99
   are medians of the rounds.
2. Caches: the same client sends repeated-query mixes to observed and cached: queries drawn
   from a Zipf distribution (s=1.1) over DISTINCT queries (a few asked often, most rarely);
   then the same with a long tail, TAIL of the requests a query never asked before (a dataset
   query with a random word added). Hit ratios from cached's /metrics; its memory at the end.
3. The query log: bytes on disk per 1,000 logged requests, from observed's log after it stops.

    .venv/bin/python bench/serving_overhead.py DATA_DIR INDEX QUERIES_JSONL [--rounds 3]

e.g. a data dir holding an ingested SciFact (`sluice eval` keeps one) and its queries.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq

DISTINCT = 300
ZIPF_S = 1.1
TAIL = 0.3


def serve(data_dir: Path, index: str, port: int, **env_settings: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_DATA_DIR": str(data_dir), "SLUICE_INDEX_NAME": index, "SLUICE_AUTH": "off"}
    env |= {f"SLUICE_{k.upper()}": v for k, v in env_settings.items()}
    command = [sys.executable, "-m", "sluice", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://localhost:{port}/ready", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server on {port} did not become ready")
        time.sleep(0.5)


def ask(url: str, queries: list[str], seconds: float) -> list[float]:
    """One client asking `queries` in order (cycling) for `seconds`: latencies in ms."""
    latencies = []
    stop = time.monotonic() + seconds
    with httpx.Client(timeout=30) as http:
        i = 0
        while time.monotonic() < stop:
            body = {"query": queries[i % len(queries)], "mode": "hybrid", "top_k": 10}
            started = time.perf_counter()
            answer = http.post(f"{url}/retrieve", json=body)
            assert answer.status_code == 200, answer.text
            latencies.append((time.perf_counter() - started) * 1000)
            i += 1
    return latencies


def scraping(url: str, stop: threading.Event) -> None:
    while not stop.wait(15):
        httpx.get(f"{url}/metrics", timeout=30)


def compare(
    urls: dict[str, str], queries: list[str], rounds: int, round_s: float, offset_by_round: bool
) -> dict[str, tuple[float, float, float]]:
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for name in urls}
    for number in range(rounds):
        start = (number * 997) % len(queries) if offset_by_round else 0
        shifted = queries[start:] + queries[:start]
        order = list(urls.items())
        for name, url in order if number % 2 == 0 else order[::-1]:  # neither always first
            ms = sorted(ask(url, shifted, round_s))
            measured[name].append((ms[len(ms) // 2], ms[int(len(ms) * 0.99)], len(ms) / round_s))
    return {
        name: tuple(statistics.median(m[i] for m in rows) for i in range(3))  # type: ignore[misc]
        for name, rows in measured.items()
    }


def cache_lookups(url: str) -> tuple[float, float]:
    """The result cache's hits and misses so far."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {}
    for line in text.splitlines():
        if line.startswith('sluice_cache_lookups_total{cache="result"'):
            values["hit" if 'outcome="hit"' in line else "miss"] = float(line.split()[-1])
    return values["hit"], values["miss"]


def cache_hit_ratio(url: str) -> float:
    hits, misses = cache_lookups(url)
    return hits / max(1.0, hits + misses)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("index")
    parser.add_argument("queries", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-s", type=float, default=20.0)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in args.queries.read_text().splitlines() if line]
    rng = np.random.default_rng(7)
    weights = 1 / np.arange(1, DISTINCT + 1) ** ZIPF_S
    mix = [texts[i] for i in rng.choice(DISTINCT, size=20_000, p=weights / weights.sum())]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    tailed = [
        f"{texts[rng.integers(len(texts))]} {''.join(rng.choice(letters, 7))}"
        if rng.random() < TAIL
        else query
        for query in mix
    ]

    work = Path(tempfile.mkdtemp(prefix="sluice-observe-"))
    names = ("bare", "observed", "cached")
    dirs = {name: work / name for name in names}
    for folder in dirs.values():
        shutil.copytree(
            args.data_dir, folder, ignore=shutil.ignore_patterns("prefect", "query-log")
        )
    off = {"result_cache_entries": "0", "query_embedding_cache_entries": "0"}
    servers = {
        "bare": serve(dirs["bare"], args.index, 8621, metrics="false", query_log="false", **off),
        "observed": serve(dirs["observed"], args.index, 8622, **off),
        "cached": serve(dirs["cached"], args.index, 8623),
    }
    urls = {name: f"http://localhost:{8621 + n}" for n, name in enumerate(names)}
    stop = threading.Event()
    for name in ("observed", "cached"):
        threading.Thread(target=scraping, args=(urls[name], stop), daemon=True).start()
    try:
        for url in urls.values():
            ask(url, texts[-50:], 5)  # warm-up, on queries the rounds do not ask
        print(f"hybrid top 10, one client, {args.rounds} rounds of {args.round_s:g} s each")
        overhead = compare(
            {n: urls[n] for n in ("bare", "observed")}, texts, args.rounds, args.round_s, True
        )
        for name, (p50, p99, rps) in overhead.items():
            print(
                f"  {name:8} distinct queries: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {rps:5.1f}/s"
            )
        (b50, b99, brps), (o50, o99, orps) = overhead["bare"], overhead["observed"]
        print(
            f"  observed/bare: p50 {o50 / b50:.3f}x  p99 {o99 / b99:.3f}x  rate {orps / brps:.3f}x"
        )
        caching = compare(
            {n: urls[n] for n in ("observed", "cached")}, mix, args.rounds, args.round_s, False
        )
        for name, (p50, p99, rps) in caching.items():
            print(
                f"  {name:8} Zipf mix:         p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {rps:5.1f}/s"
            )
        (u50, _, urps), (c50, _, crps) = caching["observed"], caching["cached"]
        ratio = cache_hit_ratio(urls["cached"])
        print(
            f"  cached/uncached: p50 {c50 / u50:.3f}x  throughput {crps / urps:.2f}x  "
            f"(result cache hit ratio {ratio:.2f}; Zipf s={ZIPF_S} over {DISTINCT} queries)"
        )
        before = cache_lookups(urls["cached"])
        tail = compare(
            {n: urls[n] for n in ("observed", "cached")}, tailed, args.rounds, args.round_s, False
        )
        for name, (p50, p99, rps) in tail.items():
            print(
                f"  {name:8} Zipf + {TAIL:.0%} tail:  p50 {p50:6.1f} ms  "
                f"p99 {p99:6.1f} ms  {rps:5.1f}/s"
            )
        after = cache_lookups(urls["cached"])
        hits, misses = after[0] - before[0], after[1] - before[1]
        (u50, _, urps), (c50, _, crps) = tail["observed"], tail["cached"]
        print(
            f"  cached/uncached: p50 {c50 / u50:.3f}x  throughput {crps / urps:.2f}x  "
            f"(result cache hit ratio {hits / max(1, hits + misses):.2f})"
        )
        for name, process in servers.items():
            print(f"  {name:8} resident memory at the end: {rss_mib(process.pid):.0f} MiB")
    finally:
        stop.set()
        for process in servers.values():
            process.terminate()  # a graceful stop writes what the query log buffered
            process.wait(timeout=60)
    log = dirs["observed"] / "query-log"
    files = list(log.glob("date=*/*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = sum(f.stat().st_size for f in files)
    print(
        f"query log: {rows} records in {len(files)} files, {size / 1024:.0f} KiB: "
        f"{size / rows * 1000 / 1024:.0f} KiB per 1,000 requests"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
