"""Maximal marginal relevance: fewer near-identical chunks at the top of a ranking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from index.contracts import ScoredPoint


def relevance(points: Sequence[ScoredPoint]) -> list[float]:
    """Scores min-max scaled over the candidates to [0, 1]: RRF, cosine, BM25 and
    cross-encoder scores live on different scales, and the diversity weight should mean the
    same whichever stage ranked them."""
    scores = [p.score for p in points]
    low, high = min(scores, default=0.0), max(scores, default=0.0)
    if high == low:
        return [1.0] * len(points)
    return [(s - low) / (high - low) for s in scores]


def mmr_order(
    points: Sequence[ScoredPoint],
    vectors: Mapping[str, npt.NDArray[np.float32]],
    diversity: float,
) -> list[tuple[ScoredPoint, float]]:
    """Every point, picked greedily (Carbonell and Goldstein, 1998): the next is the one with
    the highest `(1 - diversity) * relevance - diversity * max cosine to those picked`, and
    comes with that marginal score. `diversity` 0 keeps the order; a point without a vector
    is similar to nothing. Greedy picks do not depend on how many follow, so a longer list
    starts with the shorter one (what paging relies on)."""
    if not points:
        return []
    relevances = np.asarray(relevance(points), dtype=np.float64)
    dimension = next((len(v) for v in vectors.values()), 1)
    matrix = np.zeros((len(points), dimension), dtype=np.float64)
    for row, point in enumerate(points):
        if (vector := vectors.get(point.id)) is not None:
            norm = float(np.linalg.norm(vector))
            matrix[row] = vector / norm if norm else 0.0
    similarity = matrix @ matrix.T
    closest = np.full(len(points), -np.inf)  # the highest similarity to any pick so far
    left = list(range(len(points)))
    picked: list[tuple[ScoredPoint, float]] = []
    while left:
        penalties = np.where(np.isfinite(closest[left]), closest[left], 0.0)
        marginal = (1 - diversity) * relevances[left] - diversity * penalties
        best = int(np.argmax(marginal))  # the first of equals: the earlier-ranked point
        row = left.pop(best)
        picked.append((points[row], float(marginal[best])))
        closest = np.maximum(closest, similarity[row])
    return picked
