"""Sluice's commands with `SLUICE_STATE_URL` set: an ingest keeps its manifest and run history, and
`sluice keys` its keys, in PostgreSQL (nothing of them in the data dir), and a schema this Sluice
needs upgraded is refused with the command that upgrades it, which then does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sluice.cli.main import app
from state.database import StateDatabase
from tests.state_contract import INDEX_HEAD


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "pumps.md").write_text("# Pumps\n\nImpeller wear shows as lost pressure.\n")
    (folder / "valves.md").write_text("# Valves\n\nA gate valve is open or shut, never between.\n")
    return folder


def test_an_ingest_keeps_its_manifest_and_runs_in_postgres(
    corpus: Path,
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: None,
) -> None:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_STATE_URL", postgres_url)
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(corpus), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["new"] == 2
    again = runner.invoke(app, ["ingest", str(corpus), "--json"])
    assert json.loads(again.stdout)["unchanged"] == 2, again.output

    runs = runner.invoke(app, ["runs", "--json"])
    assert runs.exit_code == 0, runs.output
    assert [r["state"] for r in json.loads(runs.stdout)["runs"]] == ["completed", "completed"]
    assert not (tmp_path / "data" / "manifests" / "docs.sqlite").exists()
    with StateDatabase.postgres(postgres_url, "index", "docs").reading() as db:
        assert db.exec_driver_sql("SELECT count(*) FROM documents").scalar() == 2
    cost = runner.invoke(app, ["cost", "--json"])  # finds the index with no manifest file
    assert cost.exit_code == 0, cost.output
    assert list(json.loads(cost.stdout)["indexes"]) == ["docs"], cost.output

    made = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--json"])
    assert made.exit_code == 0, made.output
    key_id = json.loads(made.stdout)["key_id"]
    assert not (tmp_path / "data" / "api-keys.json").exists()
    with StateDatabase.postgres(postgres_url, "shared").reading() as db:
        assert db.exec_driver_sql("SELECT key_id FROM api_keys").scalars().all() == [key_id]
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert [k["key_id"] for k in json.loads(listed.stdout)] == [key_id], listed.output


def test_an_older_schema_is_refused_with_the_command_that_upgrades_it(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command

    from state import schema

    db = StateDatabase.postgres(postgres_url, "index", "docs")
    with db.transaction() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {db.namespace}")
        config = schema._config("index")
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")  # as an older Sluice left it
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_STATE_URL", postgres_url)
    runner = CliRunner()

    env = {
        **os.environ,
        "SLUICE_DATA_DIR": str(tmp_path / "data"),
        "SLUICE_STATE_URL": postgres_url,
    }
    refused = subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "runs"],
        env=env,
        capture_output=True,
        text=True,
    )  # the executable, whose one line any command's refusal is
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = " ".join((refused.stdout + refused.stderr).split())
    assert (
        f"needs {INDEX_HEAD}" in line and "sluice state upgrade" in line and "Traceback" not in line
    )
    before = json.loads(runner.invoke(app, ["state", "status", "--json"]).stdout)
    assert [(r["tree"], r["revision"]) for r in before] == [("index", "0001"), ("shared", None)]

    upgraded = runner.invoke(app, ["state", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert "index:" in upgraded.output and f"revision {INDEX_HEAD}" in upgraded.output
    assert runner.invoke(app, ["runs", "--json"]).exit_code == 0
    assert "pw" not in upgraded.output  # the URL is shown without its password
