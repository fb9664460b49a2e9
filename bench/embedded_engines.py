"""Benchmark two embedded Qdrant engines for Sluice's local/embedded mode.

Engines compared (same process, same synthetic data, same queries, one run):
  * ``qdrant-client`` local mode (``QdrantClient(path=...)``, pure Python/numpy, brute force),
  * ``qdrant-edge-py`` (``qdrant_edge.EdgeShard``, Rust core, in-process), measured twice:
    "edge" = upsert + flush only (plain appendable segment), and
    "edge+opt" = upsert + flush + ``EdgeShard.optimize()`` (builds HNSW / immutable segments).

Data per point: named dense vector "dense" (384-d float32, normalised, cosine, clustered),
named sparse vector "bm25" (~40 nonzeros, Zipf-distributed term ranks hashed into 2^32 ids,
positive BM25-like weights, IDF modifier), payload {"doc_id": str (N/10 docs), "source": 1 of 5,
"page": int}; keyword payload indexes on doc_id and source.

Measured per engine and size N:
  * upsert s: all N points in batches of 256, including flush (and optimize for edge+opt),
  * reopen s: close, open the same path again and run an exact count,
  * hybrid query latency: Query API with two prefetches (dense nearest limit 50, sparse nearest
    limit 50) fused with RRF (k=2), limit 10, with filter ``source == s`` -> median / p95 over
    100 queries after 5 warm-up queries; and the same query without filter (median),
  * overlap@10: mean top-10 id overlap of the filtered query with qdrant-client (exact search).
qdrant-client local mode scans every point in Python per query (~5 s/query at 100k), so for
N > 20_000 (its documented comfort limit) it runs only the first ``--slow-queries`` queries
(default 20, 1 warm-up) of the same query list; the "queries" column says how many were timed.

Run:  .venv/bin/python bench/embedded_engines.py --sizes 10000 100000
Quick: .venv/bin/python bench/embedded_engines.py --sizes 2000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

DIM, NNZ, BATCH, N_QUERIES, WARMUP, SEED = 384, 40, 256, 100, 5, 42
SOURCES = ["pdf", "html", "docx", "markdown", "email"]
COLLECTION = "bench"
Sparse = tuple[list[int], list[float]]


@dataclass
class Data:
    dense: np.ndarray  # (N, DIM) float32
    sparse: list[tuple[np.ndarray, np.ndarray]]
    payloads: list[dict[str, Any]]
    q_dense: list[list[float]]
    q_sparse: list[Sparse]
    q_source: list[str]


@dataclass
class Result:
    engine: str
    n: int
    upsert_s: float
    reopen_s: float
    filt_ms: list[float]
    nofilt_ms: list[float]
    n_queries: int = N_QUERIES
    ids: list[list[Any]] = field(default_factory=list)


def hashed_ids(ranks: np.ndarray) -> np.ndarray:
    """Map term ranks to pseudo-random 32-bit ids (odd multiplier => bijection mod 2^32)."""
    return ((ranks.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.uint32)


def make_data(n: int) -> Data:
    rng = np.random.default_rng(SEED)
    centers = rng.standard_normal((64, DIM)).astype(np.float32)
    dense = centers[rng.integers(0, 64, n)] + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    ranks = np.minimum(rng.zipf(1.15, size=(n, 3 * NNZ)), 2**24)  # Zipf-like term frequencies
    sparse: list[tuple[np.ndarray, np.ndarray]] = []
    for row in ranks:
        uniq, tf = np.unique(row, return_counts=True)
        keep = rng.permutation(len(uniq))[:NNZ]
        tfk = tf[keep].astype(np.float32)
        sparse.append((hashed_ids(uniq[keep]), (tfk * 2.2 / (tfk + 1.2)).astype(np.float32)))
    payloads = [
        {"doc_id": f"doc-{i // 10:06d}", "source": SOURCES[int(s)], "page": i % 10}
        for i, s in enumerate(rng.integers(0, len(SOURCES), n))
    ]
    q_dense, q_sparse, q_source = [], [], []
    for j, i in enumerate(rng.integers(0, n, N_QUERIES + WARMUP)):
        v = dense[i] + 0.3 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
        q_dense.append((v / np.linalg.norm(v)).tolist())
        idx = rng.permutation(sparse[i][0])[:8]  # query = 8 terms of a real document
        q_sparse.append((sorted(int(x) for x in idx), [1.0] * len(idx)))
        q_source.append(SOURCES[j % len(SOURCES)])
    return Data(dense, sparse, payloads, q_dense, q_sparse, q_source)


def run_client(
    path: str, d: Data
) -> tuple[float, float, Callable[[int, bool], list[Any]], Callable[[], None]]:
    client = QdrantClient(path=path)
    client.create_collection(
        COLLECTION,
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
        sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    for f in ("doc_id", "source"):  # local mode only records the schema, no real index
        client.create_payload_index(COLLECTION, f, models.PayloadSchemaType.KEYWORD)
    t0 = time.perf_counter()
    for s in range(0, len(d.payloads), BATCH):
        vecs = d.dense[s : s + BATCH].tolist()
        pts = [
            models.PointStruct(
                id=s + k,
                vector={
                    "dense": v,
                    "bm25": models.SparseVector(
                        indices=d.sparse[s + k][0].tolist(), values=d.sparse[s + k][1].tolist()
                    ),
                },
                payload=d.payloads[s + k],
            )
            for k, v in enumerate(vecs)
        ]
        client.upsert(COLLECTION, pts, wait=True)  # local mode persists to sqlite on each upsert
    upsert = time.perf_counter() - t0
    client.close()
    t0 = time.perf_counter()
    client = QdrantClient(path=path)
    assert client.count(COLLECTION, exact=True).count == len(d.payloads)
    reopen = time.perf_counter() - t0

    def query(i: int, filtered: bool) -> list[Any]:
        flt = (
            models.Filter(
                must=[
                    models.FieldCondition(
                        key="source", match=models.MatchValue(value=d.q_source[i])
                    )
                ]
            )
            if filtered
            else None
        )
        idx, val = d.q_sparse[i]
        res = client.query_points(
            COLLECTION,
            prefetch=[
                models.Prefetch(query=d.q_dense[i], using="dense", limit=50),
                models.Prefetch(
                    query=models.SparseVector(indices=idx, values=val), using="bm25", limit=50
                ),
            ],
            query=models.RrfQuery(rrf=models.Rrf(k=2)),
            query_filter=flt,
            limit=10,
            with_payload=False,
        )
        return [p.id for p in res.points]

    return upsert, reopen, query, client.close


def run_edge(
    path: str, d: Data, optimize: bool
) -> tuple[float, float, Callable[[int, bool], list[Any]], Callable[[], None]]:
    cfg = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    shard = qe.EdgeShard.create(path, cfg)
    for f in ("doc_id", "source"):
        shard.update(qe.UpdateOperation.create_field_index(f, qe.PayloadSchemaType.Keyword))
    t0 = time.perf_counter()
    for s in range(0, len(d.payloads), BATCH):
        vecs = d.dense[s : s + BATCH].tolist()
        pts = [
            qe.Point(
                s + k,
                {
                    "dense": v,
                    "bm25": qe.SparseVector(
                        indices=d.sparse[s + k][0].tolist(), values=d.sparse[s + k][1].tolist()
                    ),
                },
                d.payloads[s + k],
            )
            for k, v in enumerate(vecs)
        ]
        shard.update(qe.UpdateOperation.upsert_points(pts))
    shard.flush()
    if optimize:
        shard.optimize()
    upsert = time.perf_counter() - t0
    info = shard.info()
    print(
        f"    edge segments={info.segments_count} indexed_vectors={info.indexed_vectors_count}",
        flush=True,
    )
    shard.close()
    t0 = time.perf_counter()
    shard = qe.EdgeShard.load(path)
    assert shard.count(qe.CountRequest(exact=True)) == len(d.payloads)
    reopen = time.perf_counter() - t0

    def query(i: int, filtered: bool) -> list[Any]:
        flt = (
            qe.Filter(must=[qe.FieldCondition(key="source", match=qe.MatchValue(d.q_source[i]))])
            if filtered
            else None
        )
        idx, val = d.q_sparse[i]
        req = qe.QueryRequest(
            limit=10,
            prefetches=[
                qe.Prefetch(limit=50, query=qe.Query.Nearest(d.q_dense[i], using="dense")),
                qe.Prefetch(
                    limit=50,
                    query=qe.Query.Nearest(qe.SparseVector(indices=idx, values=val), using="bm25"),
                ),
            ],
            query=qe.Fusion.Rrf(k=2),  # type: ignore[arg-type]  # the stub lacks Rrf
            filter=flt,
            with_payload=False,
        )
        return [p.id for p in shard.query(req)]

    return upsert, reopen, query, shard.close


def bench(engine: str, d: Data, slow_queries: int) -> Result:
    tmp = tempfile.mkdtemp(prefix=f"sluice-bench-{engine}-")
    try:
        print(f"  {engine}: upserting {len(d.payloads)} points ...", flush=True)
        if engine == "qdrant-client":
            upsert, reopen, query, close = run_client(tmp, d)
        else:
            upsert, reopen, query, close = run_edge(
                tmp + "/shard", d, optimize=engine == "edge+opt"
            )
        slow = engine == "qdrant-client" and len(d.payloads) > 20_000
        nq, warm = (min(slow_queries, N_QUERIES), 1) if slow else (N_QUERIES, WARMUP)
        res = Result(engine, len(d.payloads), upsert, reopen, [], [], nq)
        for filtered, sink in ((True, res.filt_ms), (False, res.nofilt_ms)):
            for i in range(warm):
                query(N_QUERIES + i, filtered)
            for i in range(nq):
                t0 = time.perf_counter()
                ids = query(i, filtered)
                sink.append((time.perf_counter() - t0) * 1000)
                if filtered:
                    res.ids.append(ids)
        close()
        print(
            f"  {engine}: upsert {upsert:.1f}s reopen {reopen:.2f}s "
            f"filt median {statistics.median(res.filt_ms):.2f}ms",
            flush=True,
        )
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def table(results: list[Result]) -> str:
    lines = [
        "| engine | N | upsert s | points/s | reopen s | hybrid+filter median ms | p95 ms "
        "| hybrid no filter median ms | queries | overlap@10 vs client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref = {r.n: r.ids for r in results if r.engine == "qdrant-client"}
    for r in results:
        base = ref.get(r.n)
        ov = (
            f"{np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r.ids, base, strict=False)]):.2f}"
            if base
            else "n/a"
        )
        lines.append(
            f"| {r.engine} | {r.n} | {r.upsert_s:.2f} | {r.n / r.upsert_s:.0f} | {r.reopen_s:.3f} "
            f"| {statistics.median(r.filt_ms):.2f} | {p95(r.filt_ms):.2f} "
            f"| {statistics.median(r.nofilt_ms):.2f} | {r.n_queries} | {ov} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--engines", nargs="+", default=["qdrant-client", "edge", "edge+opt"])
    ap.add_argument("--out", default="/tmp/engines_result.md")
    ap.add_argument(
        "--slow-queries", type=int, default=20, help="qdrant-client queries when N > 20k"
    )
    args = ap.parse_args()
    results: list[Result] = []
    for n in args.sizes:
        print(f"N={n}: generating data (seed={SEED})", flush=True)
        data = make_data(n)
        for engine in args.engines:
            results.append(bench(engine, data, args.slow_queries))
            with open(args.out, "w") as fh:  # rewrite after each engine so partial runs survive
                fh.write(
                    f"Command: `{' '.join([sys.executable, *sys.argv])}`\n\n{table(results)}\n"
                )
    print(table(results))


if __name__ == "__main__":
    main()
