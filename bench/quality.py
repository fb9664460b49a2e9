"""Retrieval quality on BEIR collections: every mode, plus the fusion comparison.

    .venv/bin/python bench/quality.py                      # every collection in ../shared/data/beir
    .venv/bin/python bench/quality.py ../shared/data/beir/scifact ../shared/data/beir/nfcorpus

For each dataset: `sluice eval`'s harness with the current settings (all modes), then hybrid
retrieval on the same index with each fusion configuration below. Set SLUICE_DATA_DIR to reuse an
embedding cache; set SLUICE_RERANKER_MODEL to include hybrid+rerank, and `--blends 1,0.7,0.5` to
compare rerank-score weights (each query's pairs are scored once and reused across weights).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from flows.evaluate_flow import run_evaluation
from index.contracts import Embedder, HybridOptions
from index.fusion import FusionParams
from index.models.reranker import CrossEncoderReranker
from pipelines.beir import load_beir
from pipelines.evaluation import EvalMode, eval_alias, evaluate_modes

SHARED_BEIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir"

FUSIONS = [
    FusionParams("rrf", 60, (1.0, 1.0)),
    FusionParams("rrf", 20, (1.0, 1.0)),
    FusionParams("rrf", 2, (1.0, 1.0)),
    FusionParams("rrf", 60, (1.0, 1.5)),
    FusionParams("rrf", 60, (1.5, 1.0)),
    FusionParams("dbsf", 60, (1.0, 1.0)),
    FusionParams("minmax", 60, (1.0, 1.0)),
    FusionParams("minmax", 60, (1.0, 0.7)),
    FusionParams("minmax", 60, (0.7, 1.0)),
]


BM25_GRID = [
    {"bm25_k1": k1, "bm25_b": b, "bm25_stopwords": stop}
    for k1 in (0.9, 1.2, 1.5)
    for b in (0.6, 0.75, 0.9)
    for stop in ("lucene",)
] + [{"bm25_k1": 1.2, "bm25_b": 0.75, "bm25_stopwords": "none"}]


def bm25_grid(folder: Path, settings: Settings) -> None:
    """BM25 alone for each (k1, b, stop words): each re-indexes, with dense vectors cached."""
    print(f"\n#### BM25 parameters on {folder.name}\n")
    print("| k1 | b | stop words | nDCG@10 | Recall@100 | MRR@10 |")
    print("|---:|---:|---|---:|---:|---:|")
    for values in BM25_GRID:
        variant = settings.model_copy(update=values)
        scores = run_evaluation(folder, variant, ("bm25",)).modes["bm25"]
        print(
            f"| {values['bm25_k1']} | {values['bm25_b']} | {values['bm25_stopwords']} "
            f"| {scores['ndcg@10']:.4f} | {scores['recall@100']:.4f} | {scores['mrr@10']:.4f} |",
            flush=True,
        )


class MemoisedScores:
    """Wraps a CrossEncoder so that a (query, passage) pair is scored once across blend weights."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.scores: dict[tuple[str, str], float] = {}

    def predict(self, pairs: list[tuple[str, str]], **kwargs: object) -> list[float]:
        missing = [p for p in dict.fromkeys(pairs) if p not in self.scores]
        if missing:
            predicted = self.model.predict(missing, **kwargs)  # type: ignore[attr-defined]
            self.scores.update(zip(missing, (float(s) for s in predicted), strict=True))
        return [self.scores[p] for p in pairs]


def blend_sweep(folder: Path, settings: Settings, embedder: Embedder, blends: list[float]) -> None:
    """hybrid+rerank at each rerank-score weight `SLUICE_RERANK_BLEND` on the eval index."""
    dataset = load_beir(folder)
    parts = Components(settings)
    store, reranker = parts.store(), parts.reranker()
    if not isinstance(reranker, CrossEncoderReranker):
        raise SystemExit("--blends needs SLUICE_RERANKER_MODEL")
    reranker.warm_up()
    reranker._model = MemoisedScores(reranker._model)
    searcher = parts.searcher(store, lambda spec: embedder, reranker)
    print(f"\n#### Rerank blend on {dataset.name} ({settings.reranker_model})\n")
    print("| rerank weight | nDCG@10 | Recall@100 | MRR@10 | ms/query | degraded |")
    print("|---:|---:|---:|---:|---:|---:|")
    try:
        for alpha in [None, *blends]:  # None: hybrid alone, the baseline
            mode: EvalMode = "hybrid" if alpha is None else "hybrid+rerank"
            scores = evaluate_modes(
                dataset,
                searcher,
                eval_alias(dataset.name),
                (mode,),
                HybridOptions(rerank_blend=alpha),
            )[mode]
            print(
                f"| {'hybrid' if alpha is None else alpha} | {scores['ndcg@10']:.4f} "
                f"| {scores['recall@100']:.4f} "
                f"| {scores['mrr@10']:.4f} | {scores['ms_per_query']:.0f} "
                f"| {scores['degraded_queries']:.0f} |",
                flush=True,
            )
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "datasets", nargs="*", type=Path, help="BEIR folders (default: every shared collection)"
    )
    parser.add_argument("--pool", type=int, default=100, help="candidates per list for fusion")
    parser.add_argument("--skip-modes", action="store_true", help="only the fusion comparison")
    parser.add_argument("--bm25-grid", action="store_true", help="also tune k1, b, stop words")
    parser.add_argument("--skip-fusion", action="store_true", help="no fusion comparison")
    parser.add_argument("--blends", help="rerank weights to compare, e.g. 1,0.7,0.5")
    args = parser.parse_args()
    datasets = args.datasets or sorted(
        folder for folder in SHARED_BEIR.iterdir() if (folder / "corpus.jsonl").is_file()
    )
    settings = Settings()
    prepare_process(settings.data_dir)
    embedder = Components(settings).embedder()
    for folder in datasets:
        if args.bm25_grid:
            bm25_grid(folder, settings)
        if not args.skip_modes:
            report = run_evaluation(folder, settings)
            print(report.to_markdown(), "\n", f"seconds: {report.seconds}", flush=True)
        if args.blends:
            blend_sweep(folder, settings, embedder, [float(b) for b in args.blends.split(",")])
        if args.skip_fusion:
            continue
        dataset = load_beir(folder)
        store = Components(settings).store()
        searcher = Components(settings).searcher(store, lambda spec: embedder)
        print(f"\n#### Fusion on {dataset.name} (pool {args.pool})\n")
        print("| fusion | k | weights (dense, bm25) | nDCG@10 | Recall@100 | MRR@10 |")
        print("|---|---:|---|---:|---:|---:|")
        try:
            for fusion in FUSIONS:
                options = fusion.as_options(args.pool)
                scores = evaluate_modes(
                    dataset, searcher, eval_alias(dataset.name), ("hybrid",), options
                )["hybrid"]
                k = fusion.rrf_k if fusion.method == "rrf" else "-"
                print(
                    f"| {fusion.method} | {k} | {fusion.weights} | {scores['ndcg@10']:.4f} "
                    f"| {scores['recall@100']:.4f} | {scores['mrr@10']:.4f} |",
                    flush=True,
                )
        finally:
            store.close()


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
