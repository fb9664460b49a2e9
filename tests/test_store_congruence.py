"""The embedded engine and the qdrant-client backend answer the same queries the same way.

qdrant-client's in-process mode implements the Qdrant server's API, so it stands in for the
server here; the same class talks to a real server by URL in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from index.bm25 import Bm25Params, SparseVector
from index.client_store import QdrantClientStore
from index.edge_store import EdgeVectorStore
from index.types import (
    CollectionSpec,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    Range,
    SearchRequest,
    VectorStore,
)

DIM = 16
SPEC = CollectionSpec("docs__v1", "test-model", DIM, Bm25Params(avg_doc_length=10))


def _points(n: int = 300) -> list[IndexedPoint]:
    rng = np.random.default_rng(7)
    points = []
    for i in range(n):
        dense = rng.normal(size=DIM).astype(np.float32)
        dense /= np.linalg.norm(dense)
        terms = sorted({int(t) for t in rng.integers(0, 60, size=6)})
        sparse = SparseVector(terms, [float(v) for v in rng.uniform(0.5, 2.0, len(terms))])
        payload = {
            "doc_id": f"doc-{i % 30}",
            "doc_version": "v1",
            "source": ["alpha", "beta", "gamma"][i % 3],
            "filetype": ["pdf", "md"][i % 2],
            "pages": [i % 7, i % 7 + 1],
        }
        points.append(IndexedPoint(str(uuid.UUID(int=i + 1)), dense, sparse, payload))
    return points


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[VectorStore]]:
    backends: list[VectorStore] = [
        EdgeVectorStore(tmp_path / "edge"),
        QdrantClientStore(QdrantClient(path=str(tmp_path / "local"))),
    ]
    for store in backends:
        store.create_collection(SPEC)
        store.set_alias("docs", SPEC.name)
        store.upsert(SPEC.name, _points())
    yield backends
    for store in backends:
        store.close()


FILTERS = [
    PayloadFilter(),
    PayloadFilter(must=[MatchAny("source", ["beta"])]),
    PayloadFilter(must=[MatchAny("doc_id", ["doc-1", "doc-2", "doc-3"])]),
    PayloadFilter(must=[MatchAny("filetype", ["pdf"]), Range("pages", gte=5)]),
    PayloadFilter(must_not=[MatchAny("source", ["alpha"])]),
]


def _queries() -> list[tuple[np.ndarray, SparseVector]]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(5):
        dense = rng.normal(size=DIM).astype(np.float32)
        terms = sorted({int(t) for t in rng.integers(0, 60, size=3)})
        out.append((dense / np.linalg.norm(dense), SparseVector(terms, [1.0] * len(terms))))
    return out


@pytest.mark.parametrize("filter_index", range(len(FILTERS)))
@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_backends_rank_identically(stores, mode: str, filter_index: int) -> None:  # type: ignore[no-untyped-def]
    for dense, sparse in _queries():
        request = SearchRequest(
            mode=mode,
            limit=10,
            candidate_pool=40,
            dense=dense,
            sparse=sparse,  # type: ignore[arg-type]
            filter=FILTERS[filter_index],
        )
        edge, client = (store.search("docs__v1", request) for store in stores)
        assert [round(h.score, 4) for h in edge.hits] == [round(h.score, 4) for h in client.hits]
        if mode == "dense":
            assert [h.id for h in edge.hits] == [h.id for h in client.hits]
        if mode == "hybrid":
            assert [h.id for h in edge.dense] == [h.id for h in client.dense]
            assert [round(h.score, 4) for h in edge.sparse] == [
                round(h.score, 4) for h in client.sparse
            ]


def test_backends_agree_on_counts_aliases_and_deletes(stores) -> None:  # type: ignore[no-untyped-def]
    only_beta = PayloadFilter(must=[MatchAny("source", ["beta"])])
    for store in stores:
        assert store.resolve_alias("docs") == "docs__v1"
        assert store.list_aliases() == {"docs": "docs__v1"}
        assert store.collection_spec("docs__v1") == SPEC
        assert store.count("docs__v1") == 300
        assert store.count("docs__v1", only_beta) == 100
        assert store.distinct_values("docs__v1", "doc_id") == 30
        store.delete("docs__v1", PayloadFilter(must=[MatchAny("doc_id", ["doc-0"])]))
        assert store.count("docs__v1") == 290
        store.upsert("docs__v1", _points()[:5])
        assert store.count("docs__v1") == 291, "re-upserting existing ids adds nothing"


def test_backends_scroll_every_point_with_the_asked_fields(stores) -> None:  # type: ignore[no-untyped-def]
    edge, client = (dict(store.scroll("docs__v1", ["doc_id"], page_size=64)) for store in stores)
    assert len(edge) == 300 and edge == client
    assert all(set(payload) == {"doc_id"} for payload in edge.values())


def test_backends_read_back_every_point_with_payload_and_bm25_vector(stores) -> None:  # type: ignore[no-untyped-def]
    written = {p.id: p for p in _points()}
    for store in stores:
        pages = list(store.read_points("docs__v1", page_size=64))
        assert max(len(page) for page in pages) == 64
        read = {p.id: p for page in pages for p in page}
        assert read.keys() == written.keys()
        for point_id, point in read.items():
            assert point.payload == written[point_id].payload
            assert point.sparse.indices == written[point_id].sparse.indices
            assert point.sparse.values == pytest.approx(written[point_id].sparse.values)


def test_alias_moves_to_a_new_version(stores) -> None:  # type: ignore[no-untyped-def]
    v2 = CollectionSpec("docs__v2", "other-model", DIM, SPEC.bm25)
    for store in stores:
        store.create_collection(v2)
        store.set_alias("docs", "docs__v2")
        assert store.resolve_alias("docs") == "docs__v2"
        assert store.list_collections() == ["docs__v1", "docs__v2"]
        store.drop_collection("docs__v1")
        assert store.list_collections() == ["docs__v2"]


def test_empty_filter_delete_is_refused(stores) -> None:  # type: ignore[no-untyped-def]
    for store in stores:
        with pytest.raises(ValueError, match="empty filter"):
            store.delete("docs__v1", PayloadFilter())


def test_second_process_on_an_open_embedded_index_gets_a_clear_error(tmp_path: Path) -> None:
    from index.edge_store import IndexLockedError

    holder = EdgeVectorStore(tmp_path)
    holder.create_collection(SPEC)
    other = EdgeVectorStore(tmp_path)
    with pytest.raises(IndexLockedError, match="open in another process"):
        other.count(SPEC.name)
    holder.close()
    assert other.count(SPEC.name) == 0
