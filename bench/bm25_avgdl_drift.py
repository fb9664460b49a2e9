"""What a stale BM25 `avgdl` costs: nDCG@10 with the true average chunk length and with it off.

    SLUICE_DATA_DIR=.bench/all .venv/bin/python bench/bm25_avgdl_drift.py
    .venv/bin/python bench/bm25_avgdl_drift.py ../shared/data/beir/scifact

A collection's `avgdl` is measured on its first batch of chunks and baked into every document
vector; a corpus that later grows with longer (or shorter) chunks leaves it off by a factor. Here
each collection is chunked as `sluice eval` chunks it and scored with BM25 alone, chunk vectors
at the configured defaults, with `avgdl` = the true mean chunk length times each factor (the
index's formula and Lucene IDF, `defaults_grid.TermMatrix`). A factor f is what `sluice status`
reports as a drift of 1/f - 1 (current mean against the recorded one): 0.8 is +25 %.

Also printed: the first batch's mean against the whole corpus's (what ingest records), and the
relative standard error of the mean of a sample of `DRIFT_SAMPLE` chunks (what status measures).
With `--cost 1000000`, what that measurement costs `sluice status` on an embedded collection of
SciFact's chunk vectors repeated to 10k, 100k and 1M points, against the status's existing
document count and a full read. Prints tables and, last, one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from defaults_grid import DEPTH_CHUNKS, SHARED_BEIR, TermMatrix

from chunking.types import Chunker
from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from index.bm25.encoder import Bm25Encoder
from index.bm25.stats import DRIFT_SAMPLE, measure_avgdl
from index.contracts import CollectionSpec, IndexedPoint
from index.store.embedded import EdgeVectorStore
from pipelines.beir import as_parsed_documents, doc_id_from_uri, load_beir
from pipelines.evaluation import document_ranking, score_run

FACTORS = (0.33, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 3.0)
FIRST_BATCH = 256
"""`SLUICE_INGEST_BATCH_SIZE`'s default: the chunks a new collection's avgdl is measured on."""


def measure(folder: Path, parts: Components, chunker: Chunker) -> dict[str, object]:
    dataset = load_beir(folder)
    params = parts.bm25_params()
    encoder = Bm25Encoder(params)
    chunks = [c for d in as_parsed_documents(dataset) for c in chunker.run(d)]
    docs = [doc_id_from_uri(c.uri) for c in chunks]
    terms = TermMatrix([encoder.chunk_term_counts(c) for c in chunks])
    true = float(terms.lengths.mean())
    queries = {q: encoder.tokenize(text) for q, text in dataset.queries.items()}
    ndcg: dict[str, float] = {}
    for factor in FACTORS:
        weights = terms.weights(params.k1, params.b, average=true * factor)
        run = {
            q: document_ranking(docs[i] for i, _ in terms.top(weights, tokens, DEPTH_CHUNKS))
            for q, tokens in queries.items()
        }
        ndcg[f"{factor:g}"] = score_run(dataset.qrels, run)["ndcg@10"]
    lengths = terms.lengths
    return {
        "chunks": len(chunks),
        "avgdl": round(true, 2),
        "first_batch_avgdl": round(float(lengths[:FIRST_BATCH].mean()), 2),
        "sample_relative_error": round(
            float(np.std(lengths) / lengths.mean() / np.sqrt(DRIFT_SAMPLE)), 4
        ),
        "ndcg@10": ndcg,
    }


def _seconds(work: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def status_cost(points: int, parts: Components, chunker: Chunker) -> list[dict[str, float]]:
    """Seconds for the drift measurement, the status's document count, and a full read of the
    collection's vectors, at 10k, 100k and `points` points (SciFact's chunks repeated)."""
    params = parts.bm25_params()
    dataset = load_beir(SHARED_BEIR / "scifact")
    chunks = [c for d in as_parsed_documents(dataset) for c in chunker.run(d)]
    vectors = Bm25Encoder(params).encode_chunks(chunks)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = EdgeVectorStore(Path(folder))
        store.create_collection(CollectionSpec("cost__v1", "none", 8, params))
        written = 0
        for checkpoint in sorted({10_000, 100_000, points}):
            while written < checkpoint:
                batch = []
                for n in range(written, min(written + 1024, checkpoint)):
                    chunk = chunks[n % len(chunks)]
                    batch.append(
                        IndexedPoint(
                            str(uuid.uuid5(uuid.NAMESPACE_URL, str(n))),
                            rng.standard_normal(8).astype(np.float32),
                            vectors[n % len(chunks)],
                            {"doc_id": f"{n // 2}", "doc_version": "v", "text": chunk.text},
                        )
                    )
                store.upsert("cost__v1", batch)
                written += len(batch)
            row = {
                "points": float(written),
                "drift_s": _seconds(lambda: measure_avgdl(store, "cost__v1", params)),
                "documents_s": _seconds(lambda: store.distinct_values("cost__v1", "doc_id")),
            }
            if written <= 100_000:
                row["full_read_s"] = _seconds(
                    lambda: sum(len(p) for p in store.read_points("cost__v1", 1024)), 1
                )
            rows.append(row)
            print(f"measured the cost at {written} points", flush=True)
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "datasets",
        nargs="*",
        type=Path,
        default=[SHARED_BEIR / "scifact", SHARED_BEIR / "nfcorpus"],
    )
    parser.add_argument("--cost", type=int, help="also time status's measurement up to N points")
    args = parser.parse_args()
    settings = Settings()
    prepare_process(settings.data_dir)
    parts = Components(settings)
    chunker = parts.chunker(parts.embedder())
    results = {}
    for folder in args.datasets:
        results[folder.name] = measure(folder, parts, chunker)
        print(f"measured {folder.name}", flush=True)
    names = list(results)
    params = parts.bm25_params()
    print(
        f"\nBM25 alone (k1 {params.k1}, b {params.b}, {params.neighbours} neighbours each side "
        f"at {params.neighbour_weight:g}), nDCG@10 with avgdl = true mean x factor\n"
    )
    print("| avgdl used | drift status reports | " + " | ".join(names) + " | mean change |")
    print("|---:|---:|" + "---:|" * (len(names) + 1))
    for factor in FACTORS:
        key = f"{factor:g}"
        scores = [results[n]["ndcg@10"][key] for n in names]  # type: ignore[index]
        base = [results[n]["ndcg@10"]["1"] for n in names]  # type: ignore[index]
        change = statistics.fmean(s - b for s, b in zip(scores, base, strict=True))
        cells = " | ".join(f"{s:.4f} ({s - b:+.4f})" for s, b in zip(scores, base, strict=True))
        print(f"| true x {key} | {1 / factor - 1:+.0%} | {cells} | {change:+.4f} |")
    print()
    for name, info in results.items():
        print(
            f"{name}: {info['chunks']} chunks, avgdl {info['avgdl']}, first batch of "
            f"{FIRST_BATCH} {info['first_batch_avgdl']}, a {DRIFT_SAMPLE}-chunk sample's "
            f"relative standard error {info['sample_relative_error']:.2%}"
        )
    if args.cost:
        cost = status_cost(args.cost, parts, chunker)
        print("\n| points | drift sample (status) | documents count (status) | full read |")
        print("|---:|---:|---:|---:|")
        for row in cost:
            full = f"{row['full_read_s']:.2f} s" if "full_read_s" in row else "-"
            print(
                f"| {int(row['points']):,} | {row['drift_s']:.3f} s | {row['documents_s']:.3f} s "
                f"| {full} |"
            )
        results["status_cost"] = cost  # type: ignore[assignment]
    print(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
