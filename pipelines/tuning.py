"""Hybrid options tuned to one index from its golden set, by k-fold cross-validation.

Each golden query is searched once for deep dense and BM25 candidate lists; every configuration of
the grid (fusion method, k, weights, candidate pool) is then a pure re-fusion of those lists, and a
rerank blend a pure re-blend of cross-encoder scores computed once per (query, chunk). Choosing on
k-1 folds and scoring on the held-out one estimates what tuning gains on queries it never saw;
unless that estimate is clearly positive, the defaults are kept (docs/retrieval-quality.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from index.contracts import HybridOptions, Reranker, RerankSkipped, RetrievalTuning, ScoredPoint
from index.fusion import FusionParams, blend_scores, fuse
from index.search.searcher import IndexSearcher
from pipelines.beir import BeirDataset, doc_id_from_uri
from pipelines.evaluation import DEPTH, document_ranking

METRIC = "ndcg@10"


def fusion_grid() -> list[FusionParams]:
    """RRF at several k and weights, and min-max and DBSF at several dense weights."""
    grid = [
        FusionParams("rrf", k, weights)
        for k in (1, 5, 10, 20, 30, 60, 100)
        for weights in ((1.0, 1.0), (1.0, 1.5), (1.5, 1.0), (1.0, 2.0), (2.0, 1.0))
    ]
    for method in ("minmax", "dbsf"):
        for dense in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            weights = (round(2 * dense, 2), round(2 * (1 - dense), 2))
            grid.append(FusionParams(method, 60, weights))  # type: ignore[arg-type]
    return grid


POOLS = (20, 30, 50, 100, 200)
BLENDS = (0.3, 0.5, 0.7, 0.85, 1.0)


def describe(options: HybridOptions) -> str:
    fusion = f"{options.method}"
    if options.method == "rrf":
        fusion += f" k={options.rrf_k}"
    assert options.weights is not None
    dense, bm25 = options.weights
    return f"{fusion} weights={dense:g},{bm25:g} pool={options.candidate_pool}"


@dataclass
class GoldenCandidates:
    """Per golden query: its text and its deep dense and BM25 candidate lists."""

    queries: dict[str, str]
    dense: dict[str, list[ScoredPoint]]
    sparse: dict[str, list[ScoredPoint]]
    rerank_scores: dict[tuple[str, str], float] = field(default_factory=dict)


def collect_candidates(
    searcher: IndexSearcher, alias: str, dataset: BeirDataset
) -> GoldenCandidates:
    depth = max(POOLS)
    options = HybridOptions(candidate_pool=depth)
    candidates = GoldenCandidates(dict(dataset.queries), {}, {})
    for query_id, text in dataset.queries.items():
        result = searcher.search(
            alias, text, "hybrid", depth, options, candidate_payloads=True
        ).result
        candidates.dense[query_id], candidates.sparse[query_id] = result.dense, result.sparse
    return candidates


class Scorer:
    """Per-query `metric` (nDCG@10 unless told) of a chunk ranking, in one fixed query order."""

    def __init__(self, qrels: dict[str, dict[str, int]], metric: str = METRIC) -> None:
        self.qrels = qrels
        self.query_ids = sorted(qrels)
        self.metric = metric

    def per_query(self, rankings: dict[str, list[ScoredPoint]]) -> npt.NDArray[np.float64]:
        from ranx import Qrels, Run, evaluate

        run = {
            q: document_ranking(doc_id_from_uri(str(p.payload["uri"])) for p in rankings[q])
            for q in self.query_ids
        }
        scores = evaluate(Qrels(self.qrels), Run(run), self.metric, return_mean=False)
        return np.asarray(scores, dtype=np.float64)


def fused(candidates: GoldenCandidates, options: HybridOptions) -> dict[str, list[ScoredPoint]]:
    assert options.candidate_pool is not None
    pool, params = options.candidate_pool, FusionParams.of(options)
    return {
        q: fuse(candidates.dense[q][:pool], candidates.sparse[q][:pool], params, 2 * DEPTH)
        for q in candidates.queries
    }


def reranked(
    candidates: GoldenCandidates,
    first_stage: dict[str, list[ScoredPoint]],
    reranker: Reranker,
    depth: int,
    blend: float,
) -> dict[str, list[ScoredPoint]]:
    """The first `depth` of each ranking reordered by blended rerank scores, each (query, chunk)
    pair scored by the model once across every blend and configuration."""
    rankings = {}
    for query_id, ranking in first_stage.items():
        head = ranking[:depth]
        missing = [p for p in head if (query_id, p.id) not in candidates.rerank_scores]
        if missing:
            try:
                scored = reranker.rerank(candidates.queries[query_id], missing)
            except RerankSkipped as skipped:
                raise ValueError(f"cannot tune the rerank blend: {skipped}") from skipped
            for item in scored:
                candidates.rerank_scores[(query_id, item.point.id)] = item.rerank_score
        scores = [candidates.rerank_scores[(query_id, p.id)] for p in head]
        final = blend_scores(scores, [p.score for p in head], blend)
        order = sorted(range(len(head)), key=lambda i: (-final[i], head[i].id))
        rankings[query_id] = [head[i] for i in order] + ranking[depth:]
    return rankings


@dataclass
class TuningReport:
    index: str
    collection: str
    golden_set: str
    queries: int
    folds: int
    defaults: dict[str, Any]
    chosen: dict[str, Any]
    kept_defaults: bool
    default_score: float
    chosen_score: float
    """In-sample mean nDCG@10 on every golden query (optimistic: what was chosen on)."""
    cv_gain_mean: float
    cv_gain_std: float
    fold_gains: list[float]
    fold_choices: list[str]
    rerank: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        verdict = (
            "kept the defaults (no clear gain on held-out folds)"
            if self.kept_defaults
            else "recorded the chosen options in the collection version"
        )
        lines = [
            f"### Tuning of '{self.index}' ({self.collection})",
            "",
            f"Golden set `{self.golden_set}`: {self.queries} queries, {self.folds}-fold "
            f"cross-validation of {METRIC}; {verdict}.",
            "",
            "| | options | nDCG@10 (all queries) |",
            "|---|---|---:|",
            f"| defaults | {describe(HybridOptions(**self.defaults))} | {self.default_score:.4f} |",
            f"| chosen | {describe(HybridOptions(**self.chosen))} | {self.chosen_score:.4f} |",
            "",
            f"Cross-validated gain over the defaults: {self.cv_gain_mean:+.4f} "
            f"± {self.cv_gain_std:.4f} (mean ± standard deviation over folds; per fold "
            + ", ".join(f"{g:+.4f}" for g in self.fold_gains)
            + ").",
            "",
            "Chosen per fold: " + "; ".join(self.fold_choices) + ".",
        ]
        if self.rerank:
            lines += [
                "",
                f"Rerank blend: {self.rerank['blend']} (hybrid+rerank {METRIC} "
                f"{self.rerank['score']:.4f} in-sample; cross-validated gain over blend "
                f"{self.rerank['default_blend']}: {self.rerank['cv_gain_mean']:+.4f} "
                f"± {self.rerank['cv_gain_std']:.4f}).",
            ]
        return "\n".join(lines)


def clearly_positive(gains: Sequence[float]) -> bool:
    """The mean held-out gain is above one standard error of itself: a gain the folds agree on,
    not a wash (tuning on noise averages to about zero with a spread around it)."""
    error = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else 0.0
    return statistics.fmean(gains) > max(error, 1e-9)


def folds_of(query_ids: Sequence[str], folds: int, seed: int) -> list[npt.NDArray[np.intp]]:
    order = np.random.default_rng(seed).permutation(len(query_ids))
    return [np.sort(part) for part in np.array_split(order, folds)]


def choose(
    table: dict[HybridOptions, npt.NDArray[np.float64]],
    rows: npt.NDArray[np.intp],
    default: HybridOptions,
) -> HybridOptions:
    """The best mean on `rows`; the default wins ties, then the grid's order."""
    best = default
    for options, scores in table.items():
        if scores[rows].mean() > table[best][rows].mean() + 1e-12:
            best = options
    return best


def cross_validate(
    table: dict[HybridOptions, npt.NDArray[np.float64]],
    default: HybridOptions,
    parts: list[npt.NDArray[np.intp]],
) -> tuple[list[float], list[HybridOptions]]:
    """Per fold: the gain on the held-out fold of what the other folds chose."""
    everything = np.arange(len(next(iter(table.values()))))
    gains, choices = [], []
    for held_out in parts:
        training = np.setdiff1d(everything, held_out)
        chosen = choose(table, training, default)
        gains.append(float(table[chosen][held_out].mean() - table[default][held_out].mean()))
        choices.append(chosen)
    return gains, choices


def tune(
    searcher: IndexSearcher,
    alias: str,
    dataset: BeirDataset,
    folds: int = 5,
    seed: int = 0,
    reranker: Reranker | None = None,
) -> tuple[TuningReport, RetrievalTuning]:
    """Cross-validated hybrid options for the collection behind `alias`."""
    if len(dataset.qrels) < 2 * folds:
        raise ValueError(
            f"the golden set has {len(dataset.qrels)} queries with judgements; "
            f"{folds}-fold tuning needs at least {2 * folds}"
        )
    collection = searcher.store.resolve_alias(alias) or alias
    default = searcher.defaults
    candidates = collect_candidates(searcher, alias, dataset)
    scorer = Scorer(dataset.qrels)
    grid = [f.as_options(pool) for f in fusion_grid() for pool in POOLS]
    fusion_default = HybridOptions(
        default.method, default.rrf_k, default.weights, default.candidate_pool
    )
    table = {fusion_default: scorer.per_query(fused(candidates, fusion_default))}
    for options in grid:
        if options not in table:
            table[options] = scorer.per_query(fused(candidates, options))
    parts = folds_of(scorer.query_ids, folds, seed)
    gains, choices = cross_validate(table, fusion_default, parts)
    kept_defaults = not clearly_positive(gains)
    everything = np.arange(len(scorer.query_ids))
    chosen = fusion_default if kept_defaults else choose(table, everything, fusion_default)
    report = TuningReport(
        index=alias,
        collection=collection,
        golden_set=dataset.name,
        queries=len(scorer.query_ids),
        folds=folds,
        defaults=asdict(default),
        chosen={},
        kept_defaults=kept_defaults,
        default_score=float(table[fusion_default].mean()),
        chosen_score=float(table[chosen].mean()),
        cv_gain_mean=statistics.fmean(gains),
        cv_gain_std=statistics.pstdev(gains),
        fold_gains=gains,
        fold_choices=[describe(c) for c in choices],
    )
    blend = default.rerank_blend
    if reranker is not None:
        blend = _tune_blend(candidates, chosen, default, reranker, searcher, scorer, parts, report)
    final = HybridOptions(chosen.method, chosen.rrf_k, chosen.weights, chosen.candidate_pool, blend)
    report.chosen = asdict(final)
    tuned_at = datetime.now(UTC).isoformat(timespec="seconds")
    return report, RetrievalTuning(final, tuned_at, report.to_dict())


def _tune_blend(
    candidates: GoldenCandidates,
    chosen: HybridOptions,
    default: HybridOptions,
    reranker: Reranker,
    searcher: IndexSearcher,
    scorer: Scorer,
    parts: list[npt.NDArray[np.intp]],
    report: TuningReport,
) -> float | None:
    """The rerank blend for the chosen fusion, cross-validated the same way."""
    first_stage = fused(candidates, chosen)
    assert default.rerank_blend is not None
    table, best, gains = choose_blend(
        candidates, first_stage, reranker, searcher.rerank_candidates, scorer,
        default.rerank_blend, parts,
    )  # fmt: skip
    report.rerank = {
        "blend": best.rerank_blend,
        "default_blend": default.rerank_blend,
        "score": float(table[best].mean()),
        "cv_gain_mean": statistics.fmean(gains),
        "cv_gain_std": statistics.pstdev(gains),
    }
    return best.rerank_blend


def choose_blend(
    candidates: GoldenCandidates,
    first_stage: dict[str, list[ScoredPoint]],
    reranker: Reranker,
    depth: int,
    scorer: Scorer,
    serving_blend: float,
    parts: list[npt.NDArray[np.intp]],
) -> tuple[dict[HybridOptions, npt.NDArray[np.float64]], HybridOptions, list[float]]:
    """Each blend's per-query scores, the blend chosen (the serving one unless the
    cross-validated gain over it is clearly positive), and the gain per fold (no `parts`, too
    few queries to cross-validate: the serving blend, no gain)."""
    table = {
        HybridOptions(rerank_blend=b): scorer.per_query(
            reranked(candidates, first_stage, reranker, depth, b)
        )
        for b in sorted({*BLENDS, serving_blend})
    }
    base = HybridOptions(rerank_blend=serving_blend)
    gains = cross_validate(table, base, parts)[0] if parts else [0.0]
    if not clearly_positive(gains):
        return table, base, gains
    return table, choose(table, np.arange(len(scorer.query_ids)), base), gains
