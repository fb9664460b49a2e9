"""Tracing, off by default: with it on, a /retrieve call is one span with a child per stage,
laid end to end within it."""

from __future__ import annotations

import itertools
from pathlib import Path

from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import composition.tracing as tracing
from config.settings import Settings
from retrieval_api.app import create_app
from tests.conftest import ingest_folder


def test_a_retrieval_is_a_span_with_its_stages(tmp_path: Path, embedder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    settings = Settings(data_dir=tmp_path / "data")
    ingest_folder(settings, corpus, embedder)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.post("/retrieve", json={"query": "impeller"}).is_success
    assert tracing._provider is None, "off by default: nothing installed"

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    monkeypatch.setattr(tracing, "_provider", provider)  # as configure_tracing would
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        answer = client.post(
            "/retrieve", json={"query": "what wears out"}, headers={"X-Request-ID": "traced"}
        )
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert set(spans) >= {"retrieve", "embed", "bm25_encode", "search", "fusion"}
    parent = spans["retrieve"]
    assert parent.attributes is not None and parent.attributes["sluice.request_id"] == "traced"
    assert parent.attributes["sluice.collection"] == answer.json()["index"]["collection"]
    stages = sorted((s for s in spans.values() if s is not parent), key=lambda s: s.start_time or 0)
    for stage in stages:
        assert stage.parent is not None and stage.parent.span_id == parent.context.span_id
        assert parent.start_time <= stage.start_time <= stage.end_time <= parent.end_time  # type: ignore[operator]
    for before, after in itertools.pairwise(stages):
        assert before.end_time == after.start_time, "end to end"


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", metrics=False)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.get("/metrics").status_code == 404
        assert client.post("/retrieve", json={"query": "anything"}).status_code == 200
