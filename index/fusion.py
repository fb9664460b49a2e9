"""Rank fusion of the dense and BM25 candidate lists: pure functions.

Fusion runs client-side on the two candidate lists Qdrant returns (both filtered alike), so every
method can take weights and both backends fuse identically. `reciprocal_rank_fusion` reproduces
Qdrant's own RRF (`tests/test_fusion.py` checks it against the engine).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from index.contracts import FusionMethod, HybridOptions, ScoredPoint


@dataclass(frozen=True)
class FusionParams:
    method: FusionMethod = "minmax"
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)
    """(dense, bm25)"""

    @classmethod
    def of(cls, options: HybridOptions) -> FusionParams:
        """The fusion part of complete hybrid options."""
        assert options.method and options.rrf_k and options.weights, options
        return cls(options.method, options.rrf_k, options.weights)

    def as_options(self, candidate_pool: int | None = None) -> HybridOptions:
        return HybridOptions(self.method, self.rrf_k, self.weights, candidate_pool)


DEFAULT_HYBRID = HybridOptions(
    method="minmax", rrf_k=60, weights=(1.0, 1.0), candidate_pool=200, rerank_blend=0.7
)
"""The defaults chosen by leaving one collection out (docs/retrieval-quality.md), for a searcher
built without settings; `Settings` states the same values (a test keeps the two equal)."""


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int, weights: Sequence[float]
) -> dict[str, float]:
    """Sum over lists of weight / (k + rank), rank counted from 0 as Qdrant does."""
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def min_max(scores: Sequence[float]) -> list[float]:
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def blend_scores(
    rerank: Sequence[float], first_stage: Sequence[float], alpha: float
) -> list[float]:
    """alpha * min-max(rerank) + (1 - alpha) * min-max(first stage); alpha 1 is pure rerank."""
    if alpha >= 1 or not rerank:
        return list(rerank)
    return [
        alpha * r + (1 - alpha) * f
        for r, f in zip(min_max(list(rerank)), min_max(list(first_stage)), strict=True)
    ]


def distribution_based(scores: Sequence[float]) -> list[float]:
    """Qdrant's DBSF normalisation: mean ± 3 standard deviations mapped onto [0, 1]."""
    if len(scores) < 2:
        return [1.0] * len(scores)
    mean, spread = statistics.fmean(scores), 3 * statistics.pstdev(scores)
    if spread == 0:
        return [1.0] * len(scores)
    low, high = mean - spread, mean + spread
    return [min(1.0, max(0.0, (s - low) / (high - low))) for s in scores]


def normalised_score_fusion(
    score_lists: Sequence[dict[str, float]], weights: Sequence[float], method: FusionMethod
) -> dict[str, float]:
    """Weighted sum of per-list normalised scores; a missing candidate contributes 0."""
    normalise = min_max if method == "minmax" else distribution_based
    fused: dict[str, float] = {}
    for scores, weight in zip(score_lists, weights, strict=True):
        if not scores:
            continue
        for item, value in zip(scores, normalise(list(scores.values())), strict=True):
            fused[item] = fused.get(item, 0.0) + weight * value
    return fused


def fuse(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], params: FusionParams, limit: int
) -> list[ScoredPoint]:
    """The fused ranking; ties go to the candidate ranked higher in either list, then by id."""
    if params.method == "rrf":
        fused = reciprocal_rank_fusion(
            [[p.id for p in dense], [p.id for p in sparse]], params.rrf_k, params.weights
        )
    else:
        fused = normalised_score_fusion(
            [{p.id: p.score for p in dense}, {p.id: p.score for p in sparse}],
            params.weights,
            params.method,
        )
    points = {p.id: p for p in (*sparse, *dense)}
    best_rank: dict[str, int] = {}
    for ranking in (dense, sparse):
        for rank, point in enumerate(ranking):
            best_rank[point.id] = min(rank, best_rank.get(point.id, rank))
    order = sorted(fused, key=lambda item: (-fused[item], best_rank[item], item))[:limit]
    return [ScoredPoint(item, fused[item], points[item].payload) for item in order]
