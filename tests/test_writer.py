"""Writing chunks into a collection: cached embedding, upserts, retiring old versions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest

from chunking.ids import chunk_point_id
from chunking.types import Chunk, text_hash
from index.bm25.encoder import Bm25Encoder
from index.contracts import Bm25Params, CollectionSpec, PayloadFilter, Range, SearchRequest
from index.store.embedded import EdgeVectorStore
from index.write.embedding_cache import EmbeddingCache
from index.write.writer import IndexWriter, WriteStats, embed_cached

DIMENSION = 8
COLLECTION = "docs__v1"
BM25 = Bm25Params(avg_doc_length=10)


class StubEmbedder:
    """Deterministic unit vectors from each text's hash; remembers what it was asked to embed."""

    model_id = "stub-embedder"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @staticmethod
    def vector(text: str) -> npt.NDArray[np.float32]:
        digest = hashlib.sha256(text.encode()).digest()[:DIMENSION]
        raw = np.frombuffer(digest, dtype=np.uint8).astype(np.float32) - 127.5
        return (raw / np.linalg.norm(raw)).astype(np.float32)

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        return np.stack([self.vector(t) for t in texts]).astype(np.float32)

    @property
    def embedded(self) -> list[str]:
        return [text for call in self.calls for text in call]


def _chunk(doc_id: str, version: str, ordinal: int, text: str = "", context: str = "") -> Chunk:
    return Chunk(
        chunk_id=chunk_point_id(doc_id, version, ordinal),
        doc_id=doc_id,
        doc_version=version,
        ordinal=ordinal,
        text=text or f"{doc_id} {version} chunk {ordinal} about pumps and valves",
        uri=f"file:///docs/{doc_id}.md",
        title=f"Title of {doc_id}",
        headings=["Intro", f"Part {ordinal}"],
        pages=[ordinal + 1],
        element_types=["NarrativeText"],
        char_start=ordinal * 100,
        char_end=ordinal * 100 + 50,
        token_count=9,
        source="test-docs",
        filetype="md",
        context=context,
    )


def _document(doc_id: str, version: str, count: int) -> list[Chunk]:
    return [_chunk(doc_id, version, i) for i in range(count)]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeVectorStore]:
    """Creating a shard costs seconds of fsync; the tests share one and empty it first."""
    edge = EdgeVectorStore(tmp_path_factory.mktemp("qdrant"))
    edge.create_collection(CollectionSpec(COLLECTION, "stub-embedder", DIMENSION, BM25))
    yield edge
    edge.close()


@pytest.fixture
def store(shared_store: EdgeVectorStore) -> EdgeVectorStore:
    shared_store.delete(COLLECTION, PayloadFilter(must=[Range("ordinal", gte=0)]))
    assert shared_store.count(COLLECTION) == 0
    return shared_store


@pytest.fixture
def embedder() -> StubEmbedder:
    return StubEmbedder()


@pytest.fixture
def cache(tmp_path: Path) -> EmbeddingCache:
    return EmbeddingCache(tmp_path / "cache", "stub-embedder")


def _writer(
    store: EdgeVectorStore, embedder: StubEmbedder, cache: EmbeddingCache | None = None
) -> IndexWriter:
    return IndexWriter(store, COLLECTION, cast(Any, embedder), Bm25Encoder(BM25), cache)


def _stored(store: EdgeVectorStore) -> set[tuple[str, str, int]]:
    """(doc_id, doc_version, ordinal) of every point in the collection."""
    return {
        (payload["doc_id"], payload["doc_version"], payload["ordinal"])
        for _, payload in store.scroll(COLLECTION, ["doc_id", "doc_version", "ordinal"])
    }


# -- embed_cached ----------------------------------------------------------------------------


def test_without_a_cache_every_text_is_embedded_and_counted(embedder: StubEmbedder) -> None:
    stats = WriteStats()
    texts = ["alpha", "beta", "alpha"]

    vectors = embed_cached(cast(Any, embedder), None, [text_hash(t) for t in texts], texts, stats)

    assert embedder.embedded == texts
    assert vectors.shape == (3, DIMENSION)
    assert (stats.embedded, stats.from_cache) == (3, 0)


def test_with_a_cache_only_the_texts_it_lacks_are_embedded(
    embedder: StubEmbedder, cache: EmbeddingCache
) -> None:
    cached_vector = np.full((1, DIMENSION), 0.5, dtype=np.float32)
    cache.put_many([text_hash("alpha")], cached_vector)
    stats = WriteStats(embedded=5, from_cache=7)
    texts = ["beta", "alpha", "gamma"]

    vectors = embed_cached(cast(Any, embedder), cache, [text_hash(t) for t in texts], texts, stats)

    assert embedder.embedded == ["beta", "gamma"]
    np.testing.assert_array_equal(vectors[0], StubEmbedder.vector("beta"))
    np.testing.assert_array_equal(vectors[1], cached_vector[0], err_msg="the cached vector")
    np.testing.assert_array_equal(vectors[2], StubEmbedder.vector("gamma"))
    assert (stats.embedded, stats.from_cache) == (5 + 2, 7 + 1), "counts accumulate"


def test_embedded_texts_are_cached_for_the_next_call_and_the_next_process(
    embedder: StubEmbedder, cache: EmbeddingCache, tmp_path: Path
) -> None:
    texts = ["alpha", "beta"]
    hashes = [text_hash(t) for t in texts]
    first = embed_cached(cast(Any, embedder), cache, hashes, texts, WriteStats())

    stats = WriteStats()
    again = embed_cached(cast(Any, embedder), cache, hashes, texts, stats)
    reopened = EmbeddingCache(tmp_path / "cache", "stub-embedder")

    assert len(embedder.calls) == 1, "the second call embeds nothing"
    assert (stats.embedded, stats.from_cache) == (0, 2)
    np.testing.assert_array_equal(again, first)
    assert set(reopened.get_many(hashes)) == set(hashes)


# -- write_chunks ----------------------------------------------------------------------------


def test_written_chunks_are_points_with_the_chunk_ids_and_payloads(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    chunks = _document("a", "v1", 3)
    writer = _writer(store, embedder)

    writer.write_chunks(chunks)

    stored = {p.id: p for page in store.read_points(COLLECTION) for p in page}
    assert set(stored) == {c.chunk_id for c in chunks}
    for chunk in chunks:
        assert stored[chunk.chunk_id].payload == chunk.payload()
    assert writer.stats.points_written == 3
    assert (writer.stats.embedded, writer.stats.from_cache) == (3, 0)


def test_points_are_embedded_and_bm25_encoded_from_context_and_text(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    chunk = _chunk("a", "v1", 0, text="The impeller spins.", context="Pumps > Maintenance")
    other = _chunk("b", "v1", 0, text="Solar panels charge batteries.")
    _writer(store, embedder).write_chunks([chunk, other])

    assert embedder.embedded == ["Pumps > Maintenance\n\nThe impeller spins.", other.text]
    [stored] = [p for page in store.read_points(COLLECTION) for p in page if p.id == chunk.chunk_id]
    [expected] = Bm25Encoder(BM25).encode_documents([chunk.indexed_text])
    assert dict(zip(stored.sparse.indices, stored.sparse.values, strict=True)) == pytest.approx(
        dict(zip(expected.indices, expected.values, strict=True))
    )
    request = SearchRequest(
        mode="dense", limit=2, candidate_pool=2, dense=StubEmbedder.vector(chunk.indexed_text)
    )
    top = store.search(COLLECTION, request).hits[0]
    assert top.id == chunk.chunk_id and top.score == pytest.approx(1.0, abs=1e-5)


def test_rewriting_the_same_chunks_changes_nothing_and_embeds_nothing_again(
    store: EdgeVectorStore, embedder: StubEmbedder, cache: EmbeddingCache
) -> None:
    chunks = _document("a", "v1", 3)
    writer = _writer(store, embedder, cache)
    writer.write_chunks(chunks)
    before = {p.id: p.payload for page in store.read_points(COLLECTION) for p in page}

    writer.write_chunks(_document("a", "v1", 3))

    after = {p.id: p.payload for page in store.read_points(COLLECTION) for p in page}
    assert after == before
    assert store.count(COLLECTION) == 3
    assert len(embedder.calls) == 1
    assert (writer.stats.points_written, writer.stats.embedded, writer.stats.from_cache) == (
        6,
        3,
        3,
    )


def test_writing_no_chunks_does_nothing(store: EdgeVectorStore, embedder: StubEmbedder) -> None:
    writer = _writer(store, embedder)

    writer.write_chunks([])

    assert embedder.calls == []
    assert store.count(COLLECTION) == 0
    assert writer.stats == WriteStats()


# -- retiring versions and deleting documents ------------------------------------------------


def test_retiring_deletes_the_documents_other_versions_only(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    writer = _writer(store, embedder)
    writer.write_chunks(_document("a", "v1", 3) + _document("a", "v2", 2) + _document("b", "v1", 2))

    writer.retire_other_versions("a", "v2")

    assert _stored(store) == {
        ("a", "v2", 0),
        ("a", "v2", 1),
        ("b", "v1", 0),
        ("b", "v1", 1),
    }


def test_retiring_with_a_chunk_count_also_deletes_this_versions_tail(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    writer = _writer(store, embedder)
    # An earlier attempt wrote four chunks of v2; this one chunked it into two.
    writer.write_chunks(_document("a", "v1", 1) + _document("a", "v2", 4) + _document("b", "v2", 4))

    writer.retire_other_versions("a", "v2", keep_chunks=2)

    assert {p for p in _stored(store) if p[0] == "a"} == {("a", "v2", 0), ("a", "v2", 1)}
    assert {p for p in _stored(store) if p[0] == "b"} == {("b", "v2", i) for i in range(4)}


def test_retiring_without_a_chunk_count_keeps_all_of_this_version(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    writer = _writer(store, embedder)
    writer.write_chunks(_document("a", "v2", 4))

    writer.retire_other_versions("a", "v2")

    assert _stored(store) == {("a", "v2", i) for i in range(4)}


def test_deleting_documents_removes_all_their_points_and_no_others(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    writer = _writer(store, embedder)
    writer.write_chunks(
        _document("a", "v1", 2)
        + _document("a", "v2", 1)
        + _document("b", "v1", 2)
        + _document("c", "v1", 1)
    )

    writer.delete_documents(["a", "c"])

    assert _stored(store) == {("b", "v1", 0), ("b", "v1", 1)}


def test_deleting_no_documents_deletes_nothing(
    store: EdgeVectorStore, embedder: StubEmbedder
) -> None:
    writer = _writer(store, embedder)
    writer.write_chunks(_document("a", "v1", 2))

    writer.delete_documents([])

    assert store.count(COLLECTION) == 2
