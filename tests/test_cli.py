"""The `sluice` command in-process: ingest --json, status --json, query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sluice.cli.main import app


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "pumps.md").write_text("# Pumps\n\nThe impeller of a centrifugal pump wears out.\n")
    (folder / "sub" / "solar.md").write_text("# Solar\n\nPanels charge the batteries by day.\n")
    (folder / "sub" / "skip.txt").write_text("excluded by the glob\n")
    return folder


def test_ingest_status_and_query(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_API_PORT", "9")  # nothing listens there: query runs in-process
    runner = CliRunner()

    ingested = runner.invoke(app, ["ingest", str(corpus), "--exclude", "**/*.txt", "--json"])
    assert ingested.exit_code == 0, ingested.output
    report = json.loads(ingested.stdout)
    assert report["files_seen"] == 2 and report["new"] == 2 and report["failed"] == 0
    assert report["chunks"] == 2 and report["seconds"] > 0

    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    docs = json.loads(status.stdout)["indexes"]["docs"]
    assert docs["points"] == 2 and docs["documents"] == 2 and docs["collection"] == "docs__v1"
    assert docs["manifest"] == {"indexed": 2} and docs["last_runs"][0]["new"] == 2

    (corpus / "pumps.md").write_text("# Pumps\n\nImpeller wear shows as lost pressure.\n")
    plan = runner.invoke(
        app, ["ingest", str(corpus), "--exclude", "**/*.txt", "--dry-run", "--json"]
    )
    assert plan.exit_code == 0, plan.output
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] and (planned["changed"], planned["unchanged"]) == (1, 1)
    table = runner.invoke(app, ["ingest", str(corpus), "--exclude", "**/*.txt", "--dry-run"])
    assert "Plan (dry run, nothing written)" in table.stdout and "pumps.md" in table.stdout

    answer = runner.invoke(app, ["query", "impeller wear", "--json", "--top-k", "1"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["hits"][0]["uri"].endswith("pumps.md")


def test_ingest_of_a_missing_path_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_train_reranker_refuses_a_recipe_that_cannot_train_before_mining(tmp_path: Path) -> None:
    # The dataset folder does not exist: the recipe is refused before anything reads it.
    for recipe in (["--loss", "bce"], ["--head", "pooled"]):
        result = CliRunner().invoke(app, ["train-reranker", str(tmp_path / "none"), *recipe])
        assert result.exit_code == 2
        assert "train-reranker failed" in result.stderr
