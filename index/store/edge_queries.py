"""A `SearchRequest` as the embedded engine's queries: the dense and the sparse query, with the
filter and search parameters each needs."""

from __future__ import annotations

from typing import Any

from index.contracts import DENSE_VECTOR, SPARSE_VECTOR, SearchRequest
from index.store.filters import to_edge_filter


class EdgeQuery:
    """`dense`, `sparse`: the engine's queries (None where the request has no such vector, or a
    sparse vector without terms); `request(query, limit, payload)`: one query to run."""

    def __init__(self, edge: Any, request: SearchRequest) -> None:
        self._edge = edge
        self._filter = to_edge_filter(request.filter)
        self.dense = (
            edge.Query.Nearest(request.dense.tolist(), using=DENSE_VECTOR)
            if request.dense is not None
            else None
        )
        self.sparse = (
            edge.Query.Nearest(
                edge.SparseVector(request.sparse.indices, request.sparse.values),
                using=SPARSE_VECTOR,
            )
            if request.sparse is not None and request.sparse.indices
            else None
        )
        # ACORN keeps filtered HNSW search exact enough once a shard is optimised (measured
        # recall 0.33 -> 0.999 with a selective filter; docs/benchmarks.md).
        acorn = edge.AcornSearchParams(enable=True) if self._filter else None
        quantized = request.quantized
        self._sparse_params = edge.SearchParams(acorn=acorn) if acorn else None
        self._dense_params = (
            edge.SearchParams(
                acorn=acorn,
                quantization=edge.QuantizationSearchParams(
                    rescore=quantized.rescore, oversampling=quantized.oversampling
                ),
            )
            if quantized
            else self._sparse_params
        )

    def request(self, query: Any, limit: int, payload: bool = True) -> Any:
        params = self._dense_params if query is self.dense else self._sparse_params
        return self._edge.QueryRequest(
            limit=limit, query=query, filter=self._filter, with_payload=payload, params=params
        )
