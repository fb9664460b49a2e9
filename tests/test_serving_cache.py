"""The serving caches never answer stale: after any write, an alias move or a rollback, a cached
searcher answers exactly as one without caches; through the API, an ingest, a re-embed switch
and a rollback each make the next answer a fresh one."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composition.components import Components
from config.settings import Settings
from flows.reembed_flow import run_reembed, run_rollback
from index.bm25.encoder import Bm25Encoder
from index.contracts import (
    Bm25Params,
    CollectionSpec,
    HybridOptions,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    RetrievalTuning,
)
from index.search.searcher import IndexSearcher
from index.store.embedded import EdgeVectorStore
from retrieval_api.app import create_app
from retrieval_api.hits import build_hits
from tests.conftest import examples, ingest_folder
from tests.derived_models import widened

DIM = 8
WORDS = ["pump", "seal", "valve", "motor", "bearing", "shaft", "gear", "belt"]
QUERIES = ["pump seal", "valve", "motor  bearing", "gear belt shaft"]
BM25 = Bm25Params(avg_doc_length=4)


class _HashEmbedder:
    """A deterministic embedder: the vector of a text is a function of its words."""

    model_id = "hash-embedder"

    cache_key = "hash-embedder"
    query_prefix = ""

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self._embed(text)

    def _embed(self, text: str) -> npt.NDArray[np.float32]:
        vector = np.zeros(DIM, dtype=np.float32)
        for word in text.split():
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
        return vector / max(float(np.linalg.norm(vector)), 1e-6)


def _point(doc: int, words: list[str]) -> IndexedPoint:
    text = " ".join(words)
    payload = {"doc_id": f"doc-{doc}", "text": text, "source": "s"}
    sparse = Bm25Encoder(BM25).encode_documents([text])[0]
    return IndexedPoint(str(uuid.UUID(int=doc + 1)), _HashEmbedder()._embed(text), sparse, payload)


writes: st.SearchStrategy[tuple[str, int, list[str]]] = st.one_of(
    st.tuples(
        st.just("upsert"),
        st.integers(0, 11),
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=5),
    ),
    st.tuples(st.just("delete"), st.integers(0, 11), st.just([])),
    st.tuples(st.just("tune"), st.integers(0, 1), st.just([])),
    st.tuples(st.just("switch"), st.integers(1, 2), st.just([])),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeVectorStore]:
    opened = EdgeVectorStore(tmp_path_factory.mktemp("edge"))
    for version in (1, 2):
        opened.create_collection(CollectionSpec(f"docs__v{version}", "hash", DIM, BM25))
    opened.set_alias("docs", "docs__v1")
    yield opened
    opened.close()


@settings(
    max_examples=examples(60, 15),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(writes, min_size=1, max_size=12))
def test_a_cached_searcher_answers_as_an_uncached_one_after_any_write(
    store: EdgeVectorStore, steps: list[tuple[str, int, list[str]]]
) -> None:
    embedder = _HashEmbedder()
    cached = IndexSearcher(
        store,
        lambda spec: embedder,  # type: ignore[arg-type,return-value]
        result_cache_entries=64,
        query_vector_cache_entries=64,
    )
    fresh = IndexSearcher(store, lambda spec: embedder)  # type: ignore[arg-type,return-value]
    only_some = PayloadFilter(must=[MatchAny("doc_id", [f"doc-{i}" for i in range(6)])])

    def answers(searcher: IndexSearcher) -> list[object]:
        return [
            [hit.model_dump() for hit in build_hits(outcome, mode)] + [outcome.collection]
            for query in QUERIES
            for mode in ("hybrid", "bm25", "dense")
            for payload_filter in (None, only_some)
            for outcome in [searcher.search("docs", query, mode, 5, None, payload_filter)]
        ]

    for kind, number, words in steps:
        answers(cached)  # fills the cache before the write
        collection = store.resolve_alias("docs") or ""
        if kind == "upsert":
            store.upsert(collection, [_point(number, words)])
        elif kind == "delete":
            store.delete(collection, PayloadFilter(must=[MatchAny("doc_id", [f"doc-{number}"])]))
        elif kind == "tune":
            options = HybridOptions("rrf", 5, (1.0, 3.0), 20)
            store.record_tuning(collection, None if number else _tuning(options))
        else:
            store.set_alias("docs", f"docs__v{number}")
        expected = answers(fresh)
        assert answers(cached) == expected, f"stale after {kind}"
        assert answers(cached) == expected, f"stale from the cache after {kind}"
    assert cached.results.hits > 0, "the cache was used"


def _tuning(options: HybridOptions) -> RetrievalTuning:
    return RetrievalTuning(options, "2026-12-01T00:00:00+00:00", {})


def _ask(client: TestClient, query: str) -> dict[str, object]:
    response = client.post("/retrieve", json={"query": query, "mode": "hybrid", "top_k": 3})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_no_stale_answer_after_an_ingest_a_switch_or_a_rollback(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pump.md").write_text("# Pumps\n\nThe impeller of the pump wears out.\n")
    (corpus / "seal.md").write_text("# Seals\n\nA worn seal leaks oil.\n")
    settings = Settings(data_dir=tmp_path / "data")
    ingest_folder(settings, corpus, embedder, cache=Components(settings).embedding_cache(embedder))
    wide = str(widened(tmp_path / "wide"))
    query = "what wears out in a pump"
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        first, again = _ask(client, query), _ask(client, query)
        assert (first["cache"], again["cache"]) == ("miss", "hit")
        assert again["hits"] == first["hits"]

        (corpus / "valve.md").write_text("# Valves\n\nWhat wears out in a pump: the valve.\n")
        ingest_folder(settings, corpus, embedder)
        after_ingest = _ask(client, query)
        assert after_ingest["cache"] == "miss", "an ingest invalidates"
        assert "valve.md" in str(after_ingest["hits"])

        switched = run_reembed(settings, wide, force=True)
        assert switched.outcome == "switched"
        after_switch = _ask(client, query)
        assert after_switch["cache"] == "miss", "a switch invalidates"
        assert after_switch["index"]["collection"] == "docs__v2"  # type: ignore[index]
        assert _ask(client, query)["cache"] == "hit"

        run_rollback(settings)
        after_rollback = _ask(client, query)
        assert after_rollback["cache"] == "miss", "a rollback invalidates"
        assert after_rollback["index"]["collection"] == "docs__v1"  # type: ignore[index]
        assert after_rollback["hits"] == after_ingest["hits"]
        scraped = client.get("/metrics").text
    assert 'sluice_cache_lookups_total{cache="result",outcome="hit"} 2.0' in scraped


def test_a_cached_searcher_of_an_index_not_ingested_yet_says_so_on_both_backends(
    tmp_path: Path,
) -> None:
    from qdrant_client import QdrantClient

    from index.contracts import IndexNotFoundError
    from index.store.server import QdrantClientStore

    for store in (EdgeVectorStore(tmp_path / "edge"), QdrantClientStore(QdrantClient(":memory:"))):
        searcher = IndexSearcher(store, lambda spec: _HashEmbedder(), result_cache_entries=8)  # type: ignore[arg-type,return-value]
        with pytest.raises(IndexNotFoundError, match="does not exist yet"):
            searcher.search("docs", "pump", "bm25", 5)
        store.close()
