"""`IndexSearcher`: follows the alias on every call, and a version dropped under a request is
answered from the version that serves now."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.bm25 import Bm25Params, SparseVector
from index.edge_store import EdgeVectorStore
from index.searcher import IndexSearcher
from index.types import CollectionSpec, IndexedPoint, SearchRequest, SearchResult

DIM = 4


class _Embedder:
    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return np.full(DIM, 0.5, dtype=np.float32)


class _SwitchUnderTheRequest(EdgeVectorStore):
    """Between the searcher's alias lookup and its search, a re-embed switches the alias to
    v2 and retention drops v1, as a concurrent process would."""

    switched = False

    def search(self, collection: str, request: SearchRequest) -> SearchResult:
        if not self.switched:
            self.switched = True
            self.set_alias("docs", "docs__v2")
            self.drop_collection("docs__v1")
        return super().search(collection, request)


def _fill(store: EdgeVectorStore, name: str, doc: str) -> None:
    store.create_collection(CollectionSpec(name, "m", DIM, Bm25Params(avg_doc_length=3)))
    vector = np.full(DIM, 0.5, dtype=np.float32)
    points: Sequence[IndexedPoint] = [
        IndexedPoint(str(uuid.uuid4()), vector, SparseVector([1], [1.0]), {"doc_id": doc})
    ]
    store.upsert(name, points)


def test_a_version_dropped_under_a_request_is_answered_from_the_new_one(tmp_path: Path) -> None:
    store = _SwitchUnderTheRequest(tmp_path)
    try:
        _fill(store, "docs__v1", "old")
        _fill(store, "docs__v2", "new")
        store.set_alias("docs", "docs__v1")
        searcher = IndexSearcher(store, lambda spec: _Embedder())  # type: ignore[arg-type,return-value]
        outcome = searcher.search("docs", "anything", "dense", 5)
        assert store.switched
        assert outcome.collection == "docs__v2"
        assert [hit.payload["doc_id"] for hit in outcome.result.hits] == ["new"]
    finally:
        store.close()
