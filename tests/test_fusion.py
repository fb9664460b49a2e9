from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from index.contracts import (
    Bm25Params,
    CollectionSpec,
    IndexedPoint,
    ScoredPoint,
    SearchRequest,
    SparseVector,
)
from index.fusion import (
    FusionParams,
    distribution_based,
    fuse,
    min_max,
    normalised_score_fusion,
    reciprocal_rank_fusion,
)
from index.store.embedded import EdgeVectorStore


def _points(ids_scores: list[tuple[str, float]]) -> list[ScoredPoint]:
    return [ScoredPoint(i, s, {}) for i, s in ids_scores]


def test_rrf_sums_reciprocal_ranks_with_weights() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60, weights=[1.0, 2.0])
    assert fused["a"] == pytest.approx(1 / 60)
    assert fused["b"] == pytest.approx(1 / 61 + 2 / 60)
    assert fused["c"] == pytest.approx(2 / 61)


def test_normalisers_map_onto_the_unit_interval() -> None:
    assert min_max([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert min_max([5.0, 5.0]) == [1.0, 1.0]
    values = distribution_based([1.0, 2.0, 3.0, 10.0])
    assert all(0 <= v <= 1 for v in values) and values == sorted(values)


def test_minmax_fusion_weights_each_list() -> None:
    fused = normalised_score_fusion(
        [{"a": 1.0, "b": 0.0}, {"b": 10.0, "c": 0.0}], weights=[1.0, 3.0], method="minmax"
    )
    assert fused == {"a": 1.0, "b": 3.0, "c": 0.0}


def test_a_zero_weight_reproduces_the_other_list() -> None:
    dense = _points([("a", 0.9), ("b", 0.8), ("c", 0.7)])
    sparse = _points([("c", 9.0), ("b", 5.0)])
    for method in ("rrf", "minmax", "dbsf"):
        only_dense = fuse(dense, sparse, FusionParams(method, 60, (1.0, 0.0)), limit=3)  # type: ignore[arg-type]
        assert [p.id for p in only_dense] == ["a", "b", "c"]


def test_ties_break_by_best_rank_then_id() -> None:
    dense = _points([("x", 0.5), ("y", 0.4)])
    sparse = _points([("y", 3.0), ("x", 2.0)])
    assert [p.id for p in fuse(dense, sparse, FusionParams(), limit=2)] == ["x", "y"]


def test_our_rrf_matches_qdrants_native_rrf(tmp_path: Path) -> None:
    import qdrant_edge as edge

    rng = np.random.default_rng(3)
    store = EdgeVectorStore(tmp_path)
    store.create_collection(CollectionSpec("c__v1", "m", 8, Bm25Params()))
    points = []
    for i in range(200):
        dense = rng.normal(size=8).astype(np.float32)
        terms = sorted({int(t) for t in rng.integers(0, 40, size=5)})
        sparse = SparseVector(terms, [float(v) for v in rng.uniform(0.1, 2, len(terms))])
        points.append(IndexedPoint(str(uuid.UUID(int=i + 1)), dense, sparse, {}))
    store.upsert("c__v1", points)
    for _ in range(5):
        query_dense = rng.normal(size=8).astype(np.float32)
        query_sparse = SparseVector(sorted({int(t) for t in rng.integers(0, 40, 3)}), [1.0] * 3)
        query_sparse = SparseVector(query_sparse.indices, [1.0] * len(query_sparse.indices))
        request = SearchRequest("hybrid", 10, 30, query_dense, query_sparse)
        result = store.search("c__v1", request)
        ours = fuse(result.dense, result.sparse, FusionParams("rrf", rrf_k=60), limit=10)
        native = store._shard("c__v1").query(
            edge.QueryRequest(
                limit=10,
                prefetches=[
                    edge.Prefetch(
                        30, query=edge.Query.Nearest(list(map(float, query_dense)), using="dense")
                    ),
                    edge.Prefetch(
                        30,
                        query=edge.Query.Nearest(
                            edge.SparseVector(query_sparse.indices, query_sparse.values),
                            using="bm25",
                        ),
                    ),
                ],
                query=edge.Fusion.Rrf(k=60),  # type: ignore[arg-type]  # the stub lacks Rrf
            )
        )
        assert [round(p.score, 5) for p in ours] == [round(float(p.score), 5) for p in native]
    store.close()
