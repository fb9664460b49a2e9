"""The Prefect `evaluate` flow: index a BEIR collection, run its test queries in each mode."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from composition.components import Components
from config.settings import Settings
from flows.artifacts import artifact_key
from index.contracts import Embedder, VectorStore
from pipelines.beir import BeirDataset, load_beir
from pipelines.cost import Cost, CpuMeter, gpu_seconds
from pipelines.evaluation import (
    MODES,
    EvalReport,
    IndexingResult,
    build_eval_index,
    evaluate_modes,
    is_mode,
    write_reports,
)
from pipelines.progress import report_progress


def index_dataset(
    dataset: BeirDataset,
    parts: Components,
    embedder: Embedder,
    store: VectorStore,
) -> tuple[str, IndexingResult, int]:
    """A fresh `eval-<name>` index of the dataset's corpus with the configured parts."""
    return build_eval_index(
        dataset,
        parts.chunker(embedder),
        embedder,
        store,
        parts.bm25_params(),
        parts.embedding_cache(embedder),
        report_progress,
        parts.settings.vector_quantization,
    )


def run_evaluation(
    dataset_dir: Path,
    settings: Settings,
    modes: tuple[str, ...] | None = None,
    max_docs: int | None = None,
    out_dir: Path | None = None,
) -> EvalReport:
    """Plain-Python evaluation; the flow and tests call this."""
    started = time.perf_counter()
    meter = CpuMeter()
    if modes is None:
        modes = MODES if settings.reranker_model else MODES[:3]
    dataset = load_beir(dataset_dir, max_docs=max_docs)
    parts = Components(settings)
    embedder = parts.embedder()
    store = parts.store()
    try:
        alias, indexed, chunks = index_dataset(dataset, parts, embedder, store)
        index_seconds = time.perf_counter() - started
        scores = evaluate_modes(
            dataset,
            parts.searcher(store, lambda _: embedder),
            alias,
            modes,
            progress=report_progress,
        )
    finally:
        store.close()
    report = EvalReport(
        dataset=dataset.name,
        documents=len(dataset.corpus),
        queries=len(dataset.queries),
        chunks=chunks,
        embedding_model=settings.embedding_model,
        parameters={
            "bm25_k1": settings.bm25_k1,
            "bm25_b": settings.bm25_b,
            "bm25_stopwords": settings.bm25_stopwords,
            "bm25_neighbours": settings.bm25_neighbours,
            "bm25_neighbour_weight": settings.bm25_neighbour_weight,
            "fusion": settings.fusion_method,
            "fusion_weights": list(settings.fusion_weights),
            "rrf_k": settings.rrf_k,
            "candidate_pool": settings.candidate_pool,
            "chunker": settings.chunker,
            "chunk_context": settings.chunk_context,
            "chunk_max_tokens": settings.chunk_max_tokens,
            "vector_quantization": settings.vector_quantization,
            **(
                {
                    "vector_quantization_rescore": settings.vector_quantization_rescore,
                    "vector_quantization_oversampling": settings.vector_quantization_oversampling,
                }
                if settings.vector_quantization != "none"
                else {}
            ),
        },
        modes=scores,
        seconds={
            "index": round(index_seconds, 2),
            "total": round(time.perf_counter() - started, 2),
        },
        embedded=indexed.embedded,
        from_cache=indexed.from_cache,
        cost=Cost.of(
            parts.cost_rates(),
            meter.seconds(),
            gpu_seconds(embedder, indexed.embedded, indexed.stage_seconds.get("embed", 0.0)),
            indexed.tokens_embedded,
            chunks,
        ),
    )
    write_reports(report, out_dir or settings.data_dir / "eval-reports")
    return report


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    dataset_dir: str,
    modes: list[str] | None = None,
    max_docs: int | None = None,
    out_dir: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """nDCG@10, Recall@100 and MRR@10 of each retrieval mode on a BEIR-format dataset."""
    settings = settings or Settings()
    unknown = [m for m in modes or () if not is_mode(m)]
    if unknown:
        raise ValueError(f"unknown evaluation mode(s): {', '.join(unknown)}")
    chosen = tuple(dict.fromkeys(modes)) if modes else None
    report = run_evaluation(
        Path(dataset_dir), settings, chosen, max_docs, Path(out_dir) if out_dir else None
    )
    create_markdown_artifact(
        markdown=report.to_markdown(), key=artifact_key("evaluation", settings, report.dataset)
    )
    return report.to_dict()
