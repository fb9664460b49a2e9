"""Do hybrid searches on one embedded shard run in parallel across threads?

    .venv/bin/python bench/edge_search_threads.py [--points 30000]

Builds a 384-dimension shard, then runs the same hybrid searches from 1, 2 and 4 threads, once
through `EdgeVectorStore` as it is (one lock per store) and once with that lock replaced by a
no-op. If the engine released the GIL during a query, the no-lock rows would scale with threads.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from index.contracts import Bm25Params, CollectionSpec, IndexedPoint, SearchRequest, SparseVector
from index.store.embedded import EdgeVectorStore


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=30_000)
    parser.add_argument("--queries", type=int, default=200, help="per thread")
    args = parser.parse_args()
    store = EdgeVectorStore(Path(tempfile.mkdtemp()))
    store.create_collection(CollectionSpec("c__v1", "m", 384, Bm25Params(avg_doc_length=10)))
    rng = np.random.default_rng(0)
    for start in range(0, args.points, 1000):
        points = []
        for i in range(start, min(start + 1000, args.points)):
            vector = rng.normal(size=384).astype(np.float32)
            vector /= np.linalg.norm(vector)
            terms = sorted({int(t) for t in rng.integers(0, 5000, 20)})
            sparse = SparseVector(terms, [1.0] * len(terms))
            points.append(IndexedPoint(str(uuid.UUID(int=i + 1)), vector, sparse, {"doc_id": "d"}))
        store.upsert("c__v1", points)
    requests = []
    for _ in range(64):
        terms = sorted({int(t) for t in rng.integers(0, 5000, 5)})
        dense = rng.normal(size=384).astype(np.float32)
        requests.append(SearchRequest("hybrid", 10, 50, dense, SparseVector(terms, [1.0] * 5)))
    print("| store lock | threads | searches/s |")
    print("|---|---:|---:|")
    shipped = store._lock
    for label, lock in (("one per store (as shipped)", shipped), ("none", _NoLock())):
        store._lock = lock  # type: ignore[assignment]
        for threads in (1, 2, 4):

            def work() -> None:
                for k in range(args.queries):
                    store.search("c__v1", requests[k % len(requests)])

            workers = [threading.Thread(target=work) for _ in range(threads)]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            rate = threads * args.queries / (time.perf_counter() - started)
            print(f"| {label} | {threads} | {rate:.0f} |", flush=True)
    store._lock = shipped
    store.close()


if __name__ == "__main__":
    main()
