"""`IndexSearcher`: follows the alias on every call, and a version dropped under a request is
answered from the version that serves now."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.bm25.encoder import Bm25Encoder
from index.contracts import (
    Bm25Params,
    CollectionSpec,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    SearchRequest,
    SearchResult,
    SparseVector,
)
from index.search.searcher import IndexSearcher
from index.store.embedded import EdgeVectorStore

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


class _DeleteUnderTheRequest(EdgeVectorStore):
    """Between the candidate search and the payload read, an ingest deletes one document."""

    def search(self, collection: str, request: SearchRequest) -> SearchResult:
        result = super().search(collection, request)
        self.delete(collection, PayloadFilter(must=[MatchAny("doc_id", ["d1"])]))
        return result


PARAMS = Bm25Params(avg_doc_length=3)


def test_hybrid_candidates_come_without_payloads_and_the_hits_with_theirs(tmp_path: Path) -> None:
    """The candidate lists (hundreds of points) carry ids and scores only; the few fused hits
    are read with their payloads afterwards, leaving out any point deleted in between."""
    store = _DeleteUnderTheRequest(tmp_path)
    try:
        store.create_collection(CollectionSpec("docs__v1", "m", DIM, PARAMS))
        rng = np.random.default_rng(7)
        store.upsert(
            "docs__v1",
            [
                IndexedPoint(
                    str(uuid.uuid4()),
                    rng.random(DIM, dtype=np.float32),
                    Bm25Encoder(PARAMS).encode_document(f"pump chunk {n}"),
                    {"doc_id": f"d{n}", "text": f"pump chunk {n}"},
                )
                for n in range(12)
            ],
        )
        store.set_alias("docs", "docs__v1")
        searcher = IndexSearcher(store, lambda spec: _Embedder())  # type: ignore[arg-type,return-value]
        outcome = searcher.search("docs", "pump", "hybrid", 20)
        result = outcome.result
        assert result.dense and result.sparse
        assert all(point.payload == {} for point in (*result.dense, *result.sparse))
        assert sorted(hit.payload["doc_id"] for hit in result.hits) == sorted(
            f"d{n}" for n in range(12) if n != 1
        )
        assert all(
            hit.payload["text"] == f"pump chunk {hit.payload['doc_id'][1:]}" for hit in result.hits
        )
        assert "payloads_ms" in outcome.timings_ms

        tuning = searcher.search("docs", "chunk", "hybrid", 20, candidate_payloads=True).result
        assert all(point.payload.get("doc_id") for point in (*tuning.dense, *tuning.sparse))
    finally:
        store.close()
