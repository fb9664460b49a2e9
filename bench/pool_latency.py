"""What the candidate pool costs a hybrid search: the searcher's stages at several pools.

    SLUICE_DATA_DIR=.bench/all .venv/bin/python bench/pool_latency.py eval-nfcorpus \\
        ../shared/data/beir/nfcorpus

Runs each test query of the BEIR folder against an existing index (one `bench/quality.py` built)
at every pool in turn, interleaved so that load on the machine hits them alike; prints the median
of each stage (query embedding, Qdrant search, fusion) and of the whole call, per pool, `top_k` 10.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from index.contracts import HybridOptions
from pipelines.beir import load_beir

POOLS = (50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index")
    parser.add_argument("dataset", type=Path)
    args = parser.parse_args()
    settings = Settings()
    prepare_process(settings.data_dir)
    parts = Components(settings)
    store = parts.store()
    embedder = parts.embedder()
    searcher = parts.searcher(store, lambda spec: embedder)
    queries = list(load_beir(args.dataset).queries.values())
    stages: dict[int, dict[str, list[float]]] = {pool: {} for pool in POOLS}
    try:
        for query in queries[:5]:
            searcher.search(args.index, query, "hybrid", 10)
        for query in queries:
            for pool in POOLS:
                started = time.perf_counter()
                outcome = searcher.search(
                    args.index, query, "hybrid", 10, HybridOptions(candidate_pool=pool)
                )
                total = (time.perf_counter() - started) * 1000
                for stage, ms in {**outcome.timings_ms, "total_ms": total}.items():
                    stages[pool].setdefault(stage, []).append(ms)
    finally:
        store.close()
    names = list(stages[POOLS[0]])
    print(f"\n{len(queries)} queries on {args.index}, median ms per stage\n")
    print("| pool | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for pool in POOLS:
        cells = " | ".join(f"{statistics.median(stages[pool][n]):.2f}" for n in names)
        print(f"| {pool} | {cells} |")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
