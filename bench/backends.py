"""Embedding and reranking speed per backend and precision, side by side in one run.

For each backend: the bare model call's chunks/s over SciFact passages (title + text, the
embedder's token-bounded batches), the cosine of its vectors to torch's, rerank latency per
query (30 candidates, the reranker's own max length), the export's time and size on disk.
Backends alternate within each round; figures are medians over rounds.

    .venv/bin/python bench/backends.py ../shared/data/beir/scifact \
        --reranker models/scifact-reranker-seg [--passages 512] [--queries 20] [--rounds 3]

Prints one JSON object. Retrieval quality per backend comes from `sluice eval` (see
docs/benchmarks.md); this measures the speed and fidelity that quality is bought with.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from index.contracts import InferenceBackend, ScoredPoint
from index.models.embedder import SentenceTransformerEmbedder
from index.models.exports import export_size
from index.models.reranker import CrossEncoderReranker

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = ["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]


def read_jsonl(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    with path.open() as lines:
        for line in lines:
            rows.append(json.loads(line))
            if len(rows) == limit:
                break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--reranker", help="cross-encoder to time (default: none)")
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default=",".join(LABELS))
    parser.add_argument("--exports", type=Path, help="export folder (default: a fresh one)")
    args = parser.parse_args()
    exports = args.exports or Path(tempfile.mkdtemp(prefix="sluice-exports-"))
    labels = args.backends.split(",")
    corpus = read_jsonl(args.dataset / "corpus.jsonl", args.passages)
    passages = [f"{row.get('title', '')}\n{row['text']}".strip() for row in corpus]
    queries = [row["text"] for row in read_jsonl(args.dataset / "queries.jsonl", args.queries)]
    candidates = [
        ScoredPoint(f"p{i}", 0.0, {"text": text})
        for i, text in enumerate(passages[: args.candidates])
    ]

    results: dict[str, dict[str, Any]] = {label: {} for label in labels}
    embedders: dict[str, SentenceTransformerEmbedder] = {}
    rerankers: dict[str, CrossEncoderReranker] = {}
    for label in labels:
        backend = InferenceBackend.from_label(label)
        started = time.perf_counter()
        embedder = SentenceTransformerEmbedder(
            MODEL, "cpu", batch_tokens=16384, backend=backend, exports_dir=exports
        )
        embedder.warm_up()
        results[label]["embed_load_s"] = round(time.perf_counter() - started, 2)
        results[label]["embed_size_mb"] = round(
            (export_size(MODEL, backend, exports) or _torch_size(embedder)) / 2**20, 1
        )
        embedders[label] = embedder
        if args.reranker:
            started = time.perf_counter()
            reranker = CrossEncoderReranker(
                args.reranker, "cpu", budget_ms=1e9, backend=backend, exports_dir=exports
            )
            reranker.warm_up()
            results[label]["rerank_load_s"] = round(time.perf_counter() - started, 2)
            results[label]["rerank_size_mb"] = round(
                (export_size(args.reranker, backend, exports) or _folder_size(args.reranker))
                / 2**20,
                1,
            )
            rerankers[label] = reranker

    reference = embedders["torch"].embed_documents(passages) if "torch" in labels else None
    rates: dict[str, list[float]] = {label: [] for label in labels}
    rerank_ms: dict[str, list[float]] = {label: [] for label in labels}
    for round_number in range(args.rounds):
        order = labels if round_number % 2 == 0 else labels[::-1]
        for label in order:
            started = time.perf_counter()
            vectors = embedders[label].embed_documents(passages)
            rates[label].append(len(passages) / (time.perf_counter() - started))
            if reference is not None and round_number == 0:
                cosines = (vectors * reference).sum(axis=1)
                neighbours = _top10_overlap(vectors, reference)
                results[label].update(
                    cosine_mean=round(float(cosines.mean()), 5),
                    cosine_min=round(float(cosines.min()), 5),
                    top10_neighbour_overlap=round(neighbours, 3),
                )
            if label in rerankers:
                for query in queries:
                    started = time.perf_counter()
                    rerankers[label].rerank(query, candidates)
                    rerank_ms[label].append(1000 * (time.perf_counter() - started))
    for label in labels:
        results[label]["chunks_per_s"] = round(statistics.median(rates[label]), 1)
        if rerank_ms[label]:
            ordered = sorted(rerank_ms[label])
            results[label]["rerank_ms_p50"] = round(statistics.median(ordered), 1)
            results[label]["rerank_ms_p99"] = round(float(np.percentile(ordered, 99)), 1)
    if "torch" in labels:
        for label in labels:
            results[label]["speedup"] = round(
                results[label]["chunks_per_s"] / results["torch"]["chunks_per_s"], 2
            )
    print(json.dumps({"passages": len(passages), "rounds": args.rounds, "backends": results}))


def _top10_overlap(vectors: np.ndarray, reference: np.ndarray) -> float:
    """Mean overlap of each passage's 10 nearest passages under both sets of vectors."""
    ours = np.argsort(-(vectors @ vectors.T), axis=1)[:, 1:11]
    theirs = np.argsort(-(reference @ reference.T), axis=1)[:, 1:11]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours, theirs, strict=True)]))


def _torch_size(embedder: SentenceTransformerEmbedder) -> int:
    from index.models.catalog import resolve_model_path

    return _folder_size(resolve_model_path(embedder.model_id))


def _folder_size(model: str) -> int:
    from index.models.catalog import resolve_model_path

    folder = Path(resolve_model_path(model))
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))


if __name__ == "__main__":
    main()
