"""BM25's `avgdl` against the corpus as it is now, read back from the stored vectors.

A document vector's value for a term is tf·(k1+1)/(tf + N), N = k1·(1 − b + b·dl/avgdl). So each
term's tf = v·N/(k1+1−v), and with S = Σ v/(k1+1−v) the chunk's length dl = Σ tf = N·S solves to
    dl = k1·(1−b)·S / (1 − k1·b·S/avgdl)
exactly (neighbouring chunks' weighted terms included), for any b < 1. A stored vector therefore
gives back its chunk's length with no text to re-tokenise and no neighbours to find, and can be
re-weighted to another avgdl (`reweight`): what a new collection version does when it is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from index.contracts import Bm25Params, SparseVector, VectorStore

DRIFT_SAMPLE = 2048
"""Points read to estimate the current mean length: point ids are uuid5 hashes and both
backends scroll in id order, so the first points are a uniform sample of the collection. Its
mean's relative standard error is 0.7 % on SciFact's and NFCorpus's chunks
(bench/bm25_avgdl_drift.py), whatever the collection's size."""

DRIFT_WARNING = (-0.35, 2.0)
"""The drift (current mean over recorded avgdl, less 1) outside which a warning is due. Chunks
a third shorter than recorded cost BM25 up to 0.004 nDCG@10 on SciFact and NFCorpus, 43 %
shorter 0.008; three times longer, the most measured, 0.003 (docs/retrieval-quality.md)."""

REMEASURE = 0.05
"""A new version re-measures avgdl when the drift exceeds this: well above the sample's own
error, so a version built from an unchanged corpus keeps its vectors as they were."""


def document_length(vector: SparseVector, params: Bm25Params) -> float:
    """The (weighted) term count a BM25 document vector was encoded with."""
    k1, b = params.k1, params.b
    if b >= 1:
        raise ValueError("b = 1 leaves a vector's length unrecoverable")
    top = k1 + 1
    # A value equal to k1 + 1 (float32 rounding of a huge tf) would divide by 0.
    s = sum(v / max(top - v, 1e-9) for v in vector.values)
    return k1 * (1 - b) * s / max(1 - k1 * b * s / params.avg_doc_length, 1e-12)


def reweighable(source: Bm25Params, target: Bm25Params) -> bool:
    """Whether `reweight` can turn one's vectors into the other's: they count the same terms
    (tokens and neighbours alike), only k1, b and avgdl differ; and b < 1, below which a
    vector's length is recoverable."""
    return source.b < 1 and replace(source, k1=0, b=0, avg_doc_length=1) == replace(
        target, k1=0, b=0, avg_doc_length=1
    )


def reweight(vector: SparseVector, source: Bm25Params, target: Bm25Params) -> SparseVector:
    """The vector `target`'s parameters would have encoded the same chunk as."""
    if source == target:
        return vector
    if not reweighable(source, target):
        raise ValueError("BM25 vectors re-weight only across k1, b and avgdl")
    length = document_length(vector, source)
    old = source.k1 * (1 - source.b + source.b * length / source.avg_doc_length)
    new = target.k1 * (1 - target.b + target.b * length / target.avg_doc_length)
    values = []
    for v in vector.values:
        tf = v * old / max(source.k1 + 1 - v, 1e-9)
        values.append(tf * (target.k1 + 1) / (tf + new))
    return SparseVector(indices=list(vector.indices), values=values)


@dataclass(frozen=True)
class AvgdlDrift:
    """A collection's recorded avgdl against its chunks' mean length now (from `sampled`
    points of `points`)."""

    recorded: float
    current: float
    sampled: int
    points: int

    @property
    def drift(self) -> float:
        return self.current / self.recorded - 1

    @property
    def stale(self) -> bool:
        """Drifted far enough to cost BM25 more than 0.005 nDCG@10 (`DRIFT_WARNING`)."""
        low, high = DRIFT_WARNING
        return not low <= self.drift <= high

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "current": round(self.current, 2),
            "drift": round(self.drift, 4),
            "stale": self.stale,
        }


def measure_avgdl(
    store: VectorStore, collection: str, params: Bm25Params, sample: int = DRIFT_SAMPLE
) -> AvgdlDrift | None:
    """The mean chunk length of the collection's first `sample` points in id order, against the
    avgdl recorded in `params`; None for an empty collection, at b = 0 (avgdl unused) or at
    b = 1 (lengths unrecoverable)."""
    if not 0 < params.b < 1:
        return None
    lengths: list[float] = []
    for page in store.read_points(collection, min(sample, 1024)):
        lengths.extend(document_length(p.sparse, params) for p in page[: sample - len(lengths)])
        if len(lengths) >= sample:
            break
    if not lengths:
        return None
    current = math.fsum(lengths) / len(lengths)
    total = len(lengths) if len(lengths) < sample else store.count(collection)
    return AvgdlDrift(params.avg_doc_length, max(1.0, current), len(lengths), total)
