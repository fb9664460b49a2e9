"""The /retrieve contract over a real embedded index, in-process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from retrieval_api.app import create_app
from tests.conftest import ingest_folder

DOCS = {
    "pumps.md": "# Pumps\n\nA centrifugal pump moves water with a spinning impeller. "
    "Check the impeller for wear every spring.\n",
    "solar.md": "# Solar power\n\nSolar panels charge the batteries during the day; an inverter "
    "turns battery power into household current at night.\n",
    "garden.txt": "Garden notes\n\nWater the tomatoes every morning from the rain tank.\n",
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def indexed(settings: Settings, embedder, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest_folder(settings, folder, embedder, source_name="test-docs")
    return settings


@pytest.fixture(scope="module")
def client(indexed: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(indexed), base_url="http://localhost") as test_client:
        yield test_client


def test_empty_index_answers_with_no_hits(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://localhost") as empty:
        response = empty.post("/retrieve", json={"query": "anything"})
    assert response.status_code == 200
    assert response.json()["hits"] == []
    assert response.json()["index"] is None


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_each_mode_ranks_the_matching_document_first(client: TestClient, mode: str) -> None:
    response = client.post("/retrieve", json={"query": "impeller wear", "mode": mode, "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hits"][0]["uri"].endswith("pumps.md")
    assert body["index"]["collection"] == "docs__v1"
    assert body["index"]["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "search_ms" in body["timings_ms"] and "total_ms" in body["timings_ms"]
    assert [h["rank"] for h in body["hits"]] == list(range(1, len(body["hits"]) + 1))


def test_hybrid_hits_carry_every_stage_score(client: TestClient) -> None:
    hit = client.post("/retrieve", json={"query": "solar inverter battery"}).json()["hits"][0]
    assert hit["uri"].endswith("solar.md")
    scores = hit["scores"]
    assert scores["fused_rank"] == 1 and scores["fused"] == hit["score"]
    assert scores["dense"] is not None and scores["bm25"] is not None
    assert hit["headings"] == ["Solar power"]
    assert hit["title"] and hit["doc_id"] == hit["uri"]


@pytest.mark.parametrize("method", ["rrf", "dbsf", "minmax"])
def test_every_fusion_method_answers(client: TestClient, method: str) -> None:
    body = {"query": "impeller wear", "fusion": {"method": method, "weights": [1.0, 2.0]}}
    response = client.post("/retrieve", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["uri"].endswith("pumps.md")


def test_filters_restrict_every_mode(client: TestClient) -> None:
    garden = next(
        h["doc_id"]
        for h in client.post("/retrieve", json={"query": "tomatoes"}).json()["hits"]
        if h["uri"].endswith("garden.txt")
    )
    for mode in ("hybrid", "dense", "bm25"):
        unfiltered = client.post("/retrieve", json={"query": "water", "mode": mode}).json()
        assert {h["doc_id"] for h in unfiltered["hits"]} - {garden}, "other documents match too"
        body = {"query": "water", "mode": mode, "filters": {"doc_ids": [garden]}}
        hits = client.post("/retrieve", json=body).json()["hits"]
        assert hits and {h["doc_id"] for h in hits} == {garden}
    by_type = {"query": "water", "filters": {"metadata": {"filetype": ["txt"]}}}
    typed = client.post("/retrieve", json=by_type).json()["hits"]
    assert typed and {h["uri"][-3:] for h in typed} == {"txt"}
    by_source = {"query": "water", "filters": {"sources": ["elsewhere"]}}
    assert client.post("/retrieve", json=by_source).json()["hits"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": ""},
        {"query": "   "},
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": 10_000},
        {"query": "x", "mode": "fuzzy"},
        {"query": "x", "unknown": 1},
        {"query": "x", "filters": {"metadata": {"text": "secret"}}},
        {"query": "x", "filters": {"metadata": {"pages": {"near": 3}}}},
        {"query": "x", "filters": {"metadata": {"filetype": []}}},
        {"query": 42},
        {"query": "x", "fusion": {"method": "borda"}},
        {"query": "x", "fusion": {"weights": [0, 0]}},
        {"query": "x", "fusion": {"weights": [1, 2, 3]}},
        [1, 2],
    ],
)
def test_invalid_requests_get_422_with_a_message(client: TestClient, body: object) -> None:
    response = client.post("/retrieve", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]


def test_a_body_that_is_not_json_is_a_400_saying_so(client: TestClient) -> None:
    """As the README and the OpenAPI schema say: a syntax error, not an invalid request."""
    response = client.post(
        "/retrieve", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and error["message"].startswith("body: JSON")


def test_health_ready_and_openapi(client: TestClient) -> None:
    from composition.components import Components

    deployment = Components(client.app.state.service.settings).deployment_id()  # type: ignore[attr-defined]
    assert deployment.startswith("embedded-")
    health = client.get("/health").json()
    data_dir = str(client.app.state.service.settings.data_dir.resolve())  # type: ignore[attr-defined]
    assert health == {
        "status": "ok",
        "deployment": deployment,
        "index": "docs",
        "data_dir": data_dir,  # only on loopback: a CLI command of another data dir names it
    }
    answer = client.post("/retrieve", json={"query": "pumps"}).json()
    assert answer["index"]["deployment"] == deployment
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["collection"] == "docs__v1"
    assert "/retrieve" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    assert client.get("/nope").status_code == 404


def test_an_index_held_by_another_process_answers_503(tmp_path: Path) -> None:
    from index.contracts import Bm25Params, CollectionSpec
    from index.store.embedded import EdgeVectorStore

    settings = Settings(data_dir=tmp_path)
    holder = EdgeVectorStore(settings.qdrant_path)  # as a running ingest would hold it
    holder.create_collection(
        CollectionSpec("docs__v1", settings.embedding_model, 384, Bm25Params())
    )
    holder.set_alias("docs", "docs__v1")
    try:
        with TestClient(create_app(settings), base_url="http://localhost") as locked:
            response = locked.post("/retrieve", json={"query": "pumps"})
            ready = locked.get("/ready")
        assert ready.status_code == 503, "not ready while /retrieve cannot answer"
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "index_unavailable"
    finally:
        holder.close()


def test_rerank_without_a_model_degrades_to_the_fused_ranking(client: TestClient) -> None:
    body = client.post("/retrieve", json={"query": "impeller wear", "rerank": True}).json()
    assert body["hits"][0]["uri"].endswith("pumps.md")
    assert body["degraded"] and body["degraded"][0].startswith("rerank_unavailable")


class _LoadingReranker:
    """A reranker (the contract) whose background load ends when the test says."""

    model_id = "loading"

    def __init__(self) -> None:
        self.loaded = threading.Event()

    def warm_up(self) -> None: ...

    def warm_up_in_background(self) -> None: ...

    def is_loading(self) -> bool:
        return not self.loaded.is_set()

    def rerank(self, query: str, candidates: Any, blend: float | None = None) -> Any:
        raise AssertionError("not asked in this test")


def test_ready_waits_for_a_configured_reranker(client: TestClient) -> None:
    """A rolling switch to a new reranker must not send traffic to a replica that would skip
    reranking while the model loads."""
    searcher = client.app.state.service.searcher  # type: ignore[attr-defined]
    reranker = _LoadingReranker()
    kept, searcher.reranker = searcher.reranker, reranker
    try:
        loading = client.get("/ready")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        assert loading.json()["reason"] == "the reranker model is loading"
        reranker.loaded.set()
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
    finally:
        searcher.reranker = kept


def test_a_reranker_that_cannot_load_does_not_hold_readiness_back(
    client: TestClient, indexed: Settings, tmp_path: Path
) -> None:
    """The service answers (without reranking, and says why) rather than never being ready."""
    from composition.components import Components

    broken = indexed.model_copy(update={"reranker_model": str(tmp_path / "no-such-model")})
    state = client.app.state.service  # type: ignore[attr-defined]
    parts = Components(broken)
    reranker = parts.reranker(load_in_background=True)
    assert reranker is not None
    kept, state.searcher = state.searcher, parts.searcher(state.store, state.embedder_for, reranker)
    try:
        reranker.warm_up_in_background()
        deadline = time.monotonic() + 60
        while (ready := client.get("/ready")).status_code != 200:
            assert ready.json()["status"] == "loading" and time.monotonic() < deadline, ready.text
            time.sleep(0.1)
        body = client.post("/retrieve", json={"query": "water", "rerank": True}).json()
        assert body["hits"] and body["degraded"][0].startswith("reranker unavailable")
    finally:
        state.searcher = kept


@pytest.mark.parametrize(("budget_ms", "reranked"), [(60_000.0, True), (0.001, False)])
def test_rerank_stage_scores_or_budget_degradation(
    client: TestClient, indexed: Settings, budget_ms: float, reranked: bool
) -> None:
    """The reranker as production builds it (the composition root, the default blend weight),
    swapped in through the searcher dependency."""
    from composition.components import Components
    from index.fusion import blend_scores
    from retrieval_api.deps import ServiceState, get_searcher

    configured = indexed.model_copy(
        update={
            "reranker_model": "sentence-transformers/all-MiniLM-L6-v2",
            "embedding_device": "cpu",
            "rerank_budget_ms": budget_ms,
        }
    )
    state: ServiceState = client.app.state.service  # type: ignore[attr-defined]
    parts = Components(configured)
    searcher = parts.searcher(state.store, state.embedder_for)
    assert getattr(searcher.reranker, "blend_alpha", None) == Settings().rerank_blend == 0.7
    app = client.app
    app.dependency_overrides[get_searcher] = lambda: searcher  # type: ignore[attr-defined]
    try:
        first = client.post("/retrieve", json={"query": "water", "rerank": True}).json()
        body = client.post("/retrieve", json={"query": "water", "rerank": True}).json()
    finally:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]
    hits = body["hits"]
    assert hits and "rerank_ms" in body["timings_ms"]
    if reranked:
        assert body["degraded"] == [] and first["degraded"] == []
        assert all(h["scores"]["rerank"] is not None for h in hits)
        # Each final score is the production blend of the rerank and fused scores.
        rerank = [h["scores"]["rerank"] for h in hits]
        fused = [h["scores"]["fused"] for h in hits]
        expected = blend_scores(rerank, fused, 0.7)
        assert [h["score"] for h in hits] == pytest.approx(expected)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    else:
        assert body["degraded"][0].startswith("rerank_budget")
        assert [h["scores"]["fused_rank"] for h in hits] == list(range(1, len(hits) + 1))


def test_a_model_no_version_serves_is_released_when_another_loads(client: TestClient) -> None:
    """After a re-embed moved the alias, the old version's model goes with the next load."""
    from dataclasses import replace

    from index.versions import active_spec
    from retrieval_api.deps import ServiceState

    state: ServiceState = client.app.state.service  # type: ignore[attr-defined]
    alias = state.settings.index_name
    serving = active_spec(state.store, alias)
    assert serving is not None
    moved = replace(serving, name=f"{alias}__v90", query_prefix="query: ")
    other = replace(serving, name=f"{alias}__v91", query_prefix="search: ")
    state.store.create_collection(moved)
    try:
        state.embedder_for(moved)  # loaded while the first still serves: both kept
        assert set(state.embedders) == {serving.embedder_key, moved.embedder_key}
        state.store.set_alias(alias, moved.name)
        state.embedder_for(other)  # the first serves nothing now: released
        assert set(state.embedders) == {moved.embedder_key, other.embedder_key}
    finally:
        state.store.set_alias(alias, serving.name)
        state.store.drop_collection(moved.name)
    assert client.post("/retrieve", json={"query": "water"}).status_code == 200


def test_health_names_the_data_dir_only_where_no_other_machine_can_ask(tmp_path: Path) -> None:
    exposed = Settings(data_dir=tmp_path, api_host="0.0.0.0")
    with TestClient(create_app(exposed), base_url="http://sluice.example") as client:
        health = client.get("/health").json()
    assert health["status"] == "ok" and "data_dir" not in health


def test_what_start_up_made_is_out_of_the_collectors_sight(client: TestClient) -> None:
    """A full collection over every start-up object stopped all requests ~250 ms every ~40 s."""
    import gc

    assert gc.get_freeze_count() > 10_000
