"""Replay: logged queries searched again on another version. A version replayed against itself
changes nothing; a model with the same geometry changes nothing; a broken model changes a lot;
a record kept without its text is counted, not replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from composition.components import Components
from config.settings import Settings
from flows.reembed_flow import run_reembed, run_rollback
from flows.replay_flow import run_replay, version_collection
from pipelines.replay import _rank_correlation
from retrieval_api.app import create_app
from sluice.cli.main import app
from tests.conftest import ingest_folder
from tests.derived_models import weakened, widened
from tests.test_reembed import QUESTIONS, _write_corpus


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("replay")
    _write_corpus(root / "corpus")
    settings = Settings(data_dir=root / "data", keep_versions=5)
    ingest_folder(settings, root / "corpus", embedder)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for question in QUESTIONS.values():
            for mode in ("dense", "hybrid"):
                assert client.post("/retrieve", json={"query": question, "mode": mode}).is_success
    hashed = settings.model_copy(update={"query_log_text": False})
    with TestClient(create_app(hashed), base_url="http://localhost") as client:
        assert client.post("/retrieve", json={"query": "a private question"}).is_success
    return settings


def test_a_version_against_itself_changes_nothing(logged: Settings) -> None:
    report = run_replay(logged, logged.query_log_dir, against="1")
    assert report.baseline == report.candidate == "docs__v1"
    assert report.queries == 2 * len(QUESTIONS) and report.records == 2 * len(QUESTIONS) + 1
    assert report.skipped_without_text == 1
    assert report.overlap_at_10 == 1.0 and report.rank_correlation == pytest.approx(1.0)
    assert report.logged_overlap_at_10 == 1.0, "nothing was written since the queries"
    assert report.baseline_p50_ms > 0 and report.candidate_p50_ms > 0


def test_same_geometry_keeps_the_answers_and_a_broken_model_changes_them(
    logged: Settings, tmp_path: Path
) -> None:
    same = run_reembed(logged, str(widened(tmp_path / "wide")), force=True)
    broken = run_reembed(logged, str(weakened(tmp_path / "weak")), force=True)
    assert (same.outcome, broken.outcome) == ("switched", "switched")
    kept = run_replay(logged, logged.query_log_dir, against="v2", baseline="docs__v1")
    changed = run_replay(logged, logged.query_log_dir, against="3", baseline="1")
    assert kept.overlap_at_10 >= 0.95 and kept.rank_correlation >= 0.9
    assert changed.overlap_at_10 < kept.overlap_at_10 - 0.05
    assert changed.rank_correlation < kept.rank_correlation
    assert changed.most_changed[0].overlap <= changed.overlap_at_10
    assert "Replay" in changed.to_markdown() and changed.to_dict()["latency_ratio"] > 0


def test_unknown_versions_and_logs_are_clear_errors(logged: Settings, tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="no collection version docs__v9"):
        run_replay(logged, logged.query_log_dir, against="9")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_replay(logged, tmp_path / "nope", against="1")


def test_version_names_and_rank_correlation() -> None:
    assert {version_collection("docs", v) for v in ("2", "v2", "docs__v2")} == {"docs__v2"}
    assert _rank_correlation(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert _rank_correlation(["a", "b", "c"], ["c", "b", "a"]) < 0
    assert _rank_correlation(["a", "b"], ["a", "c"]) < 1.0


def test_components_searcher_for_replay_has_no_cache(logged: Settings) -> None:
    store = Components(logged).store()
    try:
        assert not Components(logged).searcher(store).results.enabled
    finally:
        store.close()


def test_cli_replay_prints_the_comparison_as_json(
    logged: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(logged.data_dir))
    runner = CliRunner()
    log = str(logged.query_log_dir)
    result = runner.invoke(app, ["eval", "--replay", log, "--against", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["candidate"] == "docs__v1" and report["queries"] == 2 * len(QUESTIONS)
    assert 0 <= report["overlap_at_10"] <= 1 and report["latency_ratio"] > 0
    table = runner.invoke(app, ["eval", "--replay", log, "--against", "1", "--limit", "3"])
    assert table.exit_code == 0 and "overlap@10" in table.stdout, table.output
    missing = runner.invoke(app, ["eval", "--replay", log])
    assert missing.exit_code == 2 and "--against" in missing.output
    unknown = runner.invoke(app, ["eval", "--replay", log, "--against", "v9"])
    assert unknown.exit_code == 2 and "no collection version docs__v9" in unknown.output


def test_without_a_golden_set_the_gate_replays_the_logged_queries(
    logged: Settings, tmp_path: Path
) -> None:
    store = Components(logged).store()
    serving = store.resolve_alias("docs")
    store.close()
    if serving != "docs__v1":  # an earlier test of this module switched
        run_rollback(logged, to=1)
    strict = logged.model_copy(update={"golden_set": None, "gate_replay_min_overlap": 0.95})
    rejected = run_reembed(strict, str(weakened(tmp_path / "weak")))
    assert rejected.outcome == "rejected" and rejected.gate is None
    assert rejected.replay is not None and rejected.replay["decides"]
    assert not rejected.replay["passed"] and rejected.replay["overlap_at_10"] < 0.95
    assert rejected.replay["records"] == 2 * len(QUESTIONS) + 1, "every record read is counted"
    assert "Replay of 24 logged queries (the gate, at least 0.95)" in rejected.to_markdown()
    switched = run_reembed(strict, str(widened(tmp_path / "wide")))
    assert switched.outcome == "switched" and switched.replay is not None
    assert switched.replay["passed"] and switched.replay["overlap_at_10"] >= 0.95


def test_the_latest_distinct_queries_are_taken_and_reading_stops_there() -> None:
    from pipelines.replay import logged_queries

    read: list[str] = []

    def rows():  # type: ignore[no-untyped-def]
        for query, hits in [("c", ["3"]), ("b", ["2new"]), ("b", ["2old"]), ("a", ["1"])]:
            read.append(query)
            yield {"query": query, "mode": "hybrid", "tenants": None, "chunk_ids": hits}

    sample = logged_queries(rows(), limit=2)
    assert [(q.query, q.logged) for q in sample.queries] == [("c", ("3",)), ("b", ("2new",))]
    assert read == ["c", "b", "b"] and sample.records == 2, "nothing read past the limit"
