"""The gate a reranker trained from feedback passes before it serves, at the blend that suits it.

A reranker trained on a few hundred users' queries helps only with less weight than the default
blend gives it (SciFact, 1,000 simulated feedback events: 0.7226 at blend 0.7, 0.7446 at 0.3,
hybrid alone 0.7319; docs/benchmarks.md), so judged at the serving blend alone it would be
refused where it helps. The gate scores it at every blend `sluice tune` tries, chooses one as
`sluice tune` does (k-fold cross-validation; the serving blend unless the gain is clearly
positive), and compares it there with what serves now. Every (query, chunk) pair is scored by each
model once, whatever the number of blends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.contracts import HybridOptions, Reranker
from index.search.searcher import IndexSearcher
from pipelines.beir import BeirDataset
from pipelines.tuning import (
    GoldenCandidates,
    Scorer,
    choose_blend,
    collect_candidates,
    folds_of,
    fused,
    reranked,
)


@dataclass(frozen=True)
class BlendVerdict:
    blend: float
    """The blend the trained reranker is judged at (and should serve with)."""
    serving_blend: float
    old: float
    """What serves now: the serving reranker at the serving blend, else hybrid alone."""
    new: float
    new_at_serving_blend: float
    cv_gain: float
    """Mean held-out-fold gain of the chosen blend over the serving one (0 with too few queries)."""


def judge_reranker(
    searcher: IndexSearcher,
    alias: str,
    dataset: BeirDataset,
    options: HybridOptions,
    trained: Reranker,
    serving: Reranker | None,
    metric: str,
    folds: int = 5,
) -> BlendVerdict:
    """`trained` and what serves now on `dataset`'s queries, at `options`' fusion."""
    assert options.rerank_blend is not None
    candidates = collect_candidates(searcher, alias, dataset)
    first_stage = fused(candidates, options)
    scorer = Scorer(dataset.qrels, metric)
    depth = searcher.rerank_candidates
    base = HybridOptions(rerank_blend=options.rerank_blend)
    enough = len(scorer.query_ids) >= 2 * folds
    parts = folds_of(scorer.query_ids, folds, seed=0) if enough else []
    table, best, gains = choose_blend(
        candidates, first_stage, trained, depth, scorer, options.rerank_blend, parts
    )
    if serving is None:
        old = scorer.per_query(first_stage)
    else:  # its own scores: the cache is keyed by (query, chunk), not by model
        own = GoldenCandidates(candidates.queries, candidates.dense, candidates.sparse)
        old = scorer.per_query(reranked(own, first_stage, serving, depth, options.rerank_blend))
    assert best.rerank_blend is not None
    return BlendVerdict(
        blend=best.rerank_blend,
        serving_blend=options.rerank_blend,
        old=float(old.mean()),
        new=float(table[best].mean()),
        new_at_serving_blend=float(table[base].mean()),
        cv_gain=float(np.mean(gains)),
    )
