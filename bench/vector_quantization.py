"""What int8 vector quantisation saves and costs on a BEIR collection: bytes per chunk, resident
memory, nDCG@10 and Recall@100, and search latency.

    SLUICE_DATA_DIR=.bench/quant .venv/bin/python bench/vector_quantization.py \\
        ../shared/data/beir/scifact

Two indexes of the collection on the embedded engine, embedded once (the data dir's embedding
cache): float32 (`SLUICE_VECTOR_QUANTIZATION=none`) and int8. Each is measured as ingest left it,
then once the whole collection is optimised (an HNSW graph, and for int8 the int8 copy of every
vector): what a collection well past the engine's indexing threshold looks like, since one this
small keeps its newest few thousand chunks in an unoptimised segment. Quality is `sluice eval`'s
harness (dense and hybrid); bytes per chunk are the shard's files on disk; resident memory and
latency are measured in a fresh process per configuration, which opens the index and searches
every test query (precomputed query vectors, so no model is loaded) three times.
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
from typing import Any

import numpy as np

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from flows.evaluate_flow import index_dataset
from index.bm25.encoder import Bm25Encoder
from index.contracts import SPARSE_VECTOR, QuantizedSearch, SearchRequest
from index.store.embedded import EdgeVectorStore
from pipelines.beir import load_beir
from pipelines.evaluation import evaluate_modes

ROUNDS = 3
HYBRID_POOL = 200


def optimise_everything(store_path: Path, collection: str) -> None:
    """Indexes (and quantises) every segment, however small: the shard is reopened with an
    indexing threshold of 1 KB for one optimisation (the index is the bench's own)."""
    import qdrant_edge as edge

    config = edge.EdgeConfig(
        sparse_vectors={SPARSE_VECTOR: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=1),
    )  # the dense vector's config is kept as it was made
    shard = edge.EdgeShard.load(str(store_path / "collections" / collection), config)
    shard.optimize()
    shard.flush()
    shard.close()


def kind(path: str) -> str | None:
    """Which part of the dense vector's storage a shard file is."""
    if "vector_storage-dense" in path:
        return "int8" if Path(path).name.startswith("quantized") else "float32"
    if "vector_index-dense" in path:
        return "hnsw"
    return None


def disk_bytes(store_path: Path, collection: str) -> dict[str, int]:
    """Allocated bytes (sparse files count what they hold) of the dense vectors' files, by kind."""
    kinds = {"float32": 0, "int8": 0, "hnsw": 0, "all": 0}
    for path in (store_path / "collections" / collection).rglob("*"):
        if path.is_file():
            size = path.stat().st_blocks * 512
            kinds["all"] += size
            if (part := kind(str(path))) is not None:
                kinds[part] += size
    return kinds


def resident() -> dict[str, int]:
    """This process's resident bytes: in all, and in the mapped files of the dense vectors."""
    kinds = {"float32": 0, "int8": 0, "hnsw": 0, "all": 0}
    part = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            part = kind(head[5]) if len(head) > 5 else None  # a mapping's first line
        elif head and head[0] == "Rss:":
            size = int(head[1]) * 1024
            kinds["all"] += size
            if part is not None:
                kinds[part] += size
    return kinds


def indexed_dense(store: EdgeVectorStore, collection: str) -> int:
    """Dense vectors in optimised segments (the engine counts BM25's vectors in too), once the
    optimisations under way are done."""
    store.settle()
    info = store._shard(collection).info()
    return int(info.indexed_vectors_count) - int(info.points_count)


def probe(args: argparse.Namespace) -> None:
    """In a fresh process: resident memory of the opened index, and p50 search latencies."""
    queries = json.loads(Path(args.queries).read_text())
    quantized = QuantizedSearch(args.rescore, args.oversampling) if args.quantized else None
    before = resident()
    store = EdgeVectorStore(Path(args.store))
    spec = store.collection_spec(args.collection)
    assert spec is not None
    encoder = Bm25Encoder(spec.bm25)
    store.count(args.collection)
    opened = resident()
    timings: dict[str, list[float]] = {"dense": [], "hybrid": []}
    for _ in range(ROUNDS):
        for query in queries:
            dense = np.asarray(query["dense"], dtype=np.float32)
            sparse = encoder.encode_query(query["text"])
            for mode, limit in (("dense", 10), ("hybrid", 10)):
                request = SearchRequest(
                    mode,  # type: ignore[arg-type]
                    limit,
                    HYBRID_POOL,
                    dense=dense,
                    sparse=sparse,
                    quantized=quantized,
                )
                started = time.perf_counter()
                store.search(args.collection, request)
                timings[mode].append((time.perf_counter() - started) * 1000)
    searched = resident()
    store.close()
    print(
        json.dumps(
            {
                "rss_open": {k: opened[k] - before[k] for k in before},
                "rss_searched": {k: searched[k] - before[k] for k in before},
                "p50_ms": {m: statistics.median(t) for m, t in timings.items()},
            }
        )
    )


def measure(
    settings: Settings, collection: str, queries_file: Path, quantized: QuantizedSearch | None
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--probe",
        "--store",
        str(settings.qdrant_path),
        "--collection",
        collection,
        "--queries",
        str(queries_file),
    ]
    if quantized is not None:
        command += ["--quantized", "--oversampling", str(quantized.oversampling)]
        command += [] if quantized.rescore else ["--no-rescore"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", nargs="?", type=Path)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--collection", help=argparse.SUPPRESS)
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    parser.add_argument("--quantized", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-rescore", dest="rescore", action="store_false")
    parser.add_argument("--oversampling", type=float, default=2.0)
    args = parser.parse_args()
    if args.probe:
        probe(args)
        return
    settings = Settings()
    prepare_process(settings.data_dir)
    dataset = load_beir(args.dataset)
    embedder = Components(settings).embedder()
    queries_file = Path(tempfile.mkdtemp()) / "queries.json"
    queries_file.write_text(
        json.dumps(
            [
                {"text": t, "dense": embedder.embed_query(t).tolist()}
                for t in dataset.queries.values()
            ]
        )
    )
    rows = []
    for quantization in ("none", "int8"):
        variant = settings.model_copy(update={"vector_quantization": quantization})
        parts = Components(variant)
        store = EdgeVectorStore(variant.qdrant_path)
        started = time.perf_counter()
        alias, _, chunks = index_dataset(dataset, parts, embedder, store)
        build_s = time.perf_counter() - started
        collection = store.resolve_alias(alias)
        assert collection is not None
        for state in ("as ingested", "optimised"):
            if state == "optimised":
                store.close()
                optimise_everything(variant.qdrant_path, collection)
                store = EdgeVectorStore(variant.qdrant_path)
            indexed = indexed_dense(store, collection)
            disk = disk_bytes(variant.qdrant_path, collection)
            rescores = (True, False) if quantization == "int8" and state == "optimised" else (True,)
            for rescore in rescores:
                search = QuantizedSearch(rescore, args.oversampling)
                scoring = variant.model_copy(update={"vector_quantization_rescore": rescore})
                searcher = Components(scoring).searcher(store, lambda spec: embedder)
                scores = evaluate_modes(dataset, searcher, alias, ("dense", "hybrid"))
                store.close()
                probed = measure(
                    variant, collection, queries_file, search if quantization == "int8" else None
                )
                store = EdgeVectorStore(variant.qdrant_path)
                row = {
                    "quantization": quantization,
                    "state": state,
                    "rescore": rescore if quantization == "int8" else None,
                    "chunks": chunks,
                    "optimised_share": indexed / chunks,
                    "build_s": build_s,
                    "disk": disk,
                    "scores": scores,
                    **probed,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        store.close()
    print(
        "\n| dense vectors | state | rescore | optimised | B/chunk float32 / int8 / HNSW "
        "(disk) | RSS MiB open / searched | resident B/chunk float32 / int8 files "
        "| dense nDCG@10 | dense R@100 | hybrid nDCG@10 | hybrid R@100 "
        "| p50 ms dense k=10 / hybrid |"
    )
    print("|---|---|---|---:|---|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        disk, n = row["disk"], row["chunks"]
        dense, hybrid = row["scores"]["dense"], row["scores"]["hybrid"]
        rescored = {None: "-", True: f"x{args.oversampling:g}", False: "no"}[row["rescore"]]
        print(
            f"| {row['quantization']} | {row['state']} | {rescored} "
            f"| {row['optimised_share']:.0%} "
            f"| {disk['float32'] / n:.0f} / {disk['int8'] / n:.0f} / {disk['hnsw'] / n:.0f} "
            f"| {row['rss_open']['all'] / 2**20:.1f} / {row['rss_searched']['all'] / 2**20:.1f} "
            f"| {row['rss_searched']['float32'] / n:.0f} / {row['rss_searched']['int8'] / n:.0f} "
            f"| {dense['ndcg@10']:.4f} | {dense['recall@100']:.4f} "
            f"| {hybrid['ndcg@10']:.4f} | {hybrid['recall@100']:.4f} "
            f"| {row['p50_ms']['dense']:.2f} / {row['p50_ms']['hybrid']:.2f} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
