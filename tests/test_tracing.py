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
from composition.components import Components
from config.settings import Settings
from flows.ingest_flow import run_sync
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


def test_an_ingest_run_is_a_span_with_its_stages(tmp_path: Path, embedder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    monkeypatch.setattr(tracing, "_provider", provider)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    settings = Settings(data_dir=tmp_path / "data")
    report = run_sync(settings, Components(settings).folder_source(corpus))
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert set(spans) >= {"ingest", "list", "read_parse", "embed", "upsert"}
    run = spans["ingest"]
    assert run.attributes is not None and run.attributes["sluice.new"] == 1
    assert run.attributes["sluice.cpu_seconds"] == report.cost.cpu_seconds
    embed = spans["embed"]
    assert embed.parent is not None and embed.parent.span_id == run.context.span_id
    assert embed.start_time == run.start_time, "stages that overlap start with the run"


def test_the_cpu_ledger_charges_a_lone_call_all_and_shares_overlapping_ones() -> None:
    import time

    from retrieval_api.cpu_ledger import CpuLedger

    def burn(seconds: float) -> None:
        until = time.process_time() + seconds
        while time.process_time() < until:
            pass

    ledger = CpuLedger()
    alone = ledger.start()
    burn(0.2)
    assert 0.2 <= ledger.stop(alone) < 0.35
    first = ledger.start()
    burn(0.1)
    second = ledger.start()
    burn(0.2)  # shared by both
    first_s = ledger.stop(first)
    burn(0.1)
    second_s = ledger.stop(second)
    assert 0.2 <= first_s < 0.3 and 0.2 <= second_s < 0.3
    assert 0.4 <= first_s + second_s < 0.55, "together they are charged all the process spent"
