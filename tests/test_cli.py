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


def test_query_refuses_an_api_that_serves_another_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API of another data dir on the configured port is named, not silently asked."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from config.settings import Settings
    from retrieval_api.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    other = create_app(Settings(data_dir=tmp_path / "other"))
    server = uvicorn.Server(uvicorn.Config(other, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "mine"))
        monkeypatch.setenv("SLUICE_API_PORT", str(port))
        answer = CliRunner().invoke(app, ["query", "pumps"])
        assert answer.exit_code == 2
        said = " ".join(answer.output.split())
        other_dir, my_dir = (tmp_path / "other").resolve(), (tmp_path / "mine").resolve()
        assert f"serves the data dir {other_dir}" in said
        assert f"SLUICE_DATA_DIR ({my_dir})" in said
        assert f"export SLUICE_DATA_DIR={other_dir}" in said
    finally:
        server.should_exit = True
        thread.join(timeout=30)


EXPECTED_FAILURES = {
    "an unknown source": (
        ["ingest", "--source", "nope"],
        "ingest failed: no source named 'nope' (sources: none configured)",
    ),
    "nothing to ingest": (
        ["ingest"],
        "nothing to ingest: give a PATH, or configure [[sources]]",
    ),
    "deploy with no sources": (
        ["deploy"],
        "no sources configured: add [[sources]] to the config file",
    ),
    "a re-embed with no golden set": (
        ["reembed", "--model", "any"],
        "re-embed failed: no golden set to compare the two versions on: set SLUICE_GOLDEN_SET "
        "or pass --golden (--force switches without a comparison)",
    ),
    "versions of an index that does not exist": (
        ["versions", "--index", "nope"],
        "versions failed: index 'nope' has no versions (indexes here: none yet)",
    ),
    "a tune with no golden set": (
        ["tune"],
        "tune failed: no golden set: set SLUICE_GOLDEN_SET or pass --golden",
    ),
}


@pytest.mark.parametrize("case", EXPECTED_FAILURES, ids=list(EXPECTED_FAILURES))
def test_an_expected_failure_is_one_line_and_exit_2(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before any flow run starts, so Prefect logs no traceback either."""
    command, expected = EXPECTED_FAILURES[case]
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SLUICE_CONFIG_FILE", raising=False)
    monkeypatch.delenv("SLUICE_GOLDEN_SET", raising=False)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [expected]


def test_config_check_shows_each_value_and_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text('index_name = "manuals"\nqdrant_api_key = "s3cret"\n')
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_BM25_K1", "1.1")
    result = CliRunner().invoke(app, ["config", "check", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows["index_name"] == {"value": "manuals", "from": f"file ({config})"}
    assert rows["bm25_k1"] == {"value": 1.1, "from": "environment"}
    assert rows["rrf_k"] == {"value": 60, "from": "default"}
    assert "s3cret" not in result.stdout and rows["qdrant_api_key"]["value"] == "**********"

    config.write_text('index_nmae = "manuals"\n')
    broken = CliRunner().invoke(app, ["config", "check"])
    assert broken.exit_code == 2
    assert broken.output.strip() == (
        "invalid configuration: index_nmae: unknown key; did you mean 'index_name'?"
    )


def test_status_of_a_data_dir_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    """In a process of its own, as a user runs it: nothing has set PREFECT_HOME elsewhere."""
    import os
    import subprocess
    import sys

    data = tmp_path / "nothing-here"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    env["SLUICE_DATA_DIR"] = str(data)

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sluice", "status", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    result = status("--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["indexes"] == {}
    plain = status()
    assert plain.returncode == 0 and "no index yet" in plain.stdout + plain.stderr
    assert not data.exists()


def test_exit_codes_and_flow_states_for_failed_documents_and_held_deletions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    """An ingest that completed with failed documents exits 4 and its flow run ends in
    `CompletedWithFailures`; one that held deletions exits 5 (`DeletionsHeld`)."""
    from flows.ingest_flow import ingest_flow

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\nPumps and valves, part {i}.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a PDF at all")
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    from config.settings import Settings

    first = ingest_flow(path=str(folder), settings=Settings(), return_state=True)
    assert (first.type.value, first.name) == ("COMPLETED", "CompletedWithFailures")
    assert first.result()["failed"] == 1  # type: ignore[index]

    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 still not a PDF")  # changed: parsed again
    partial = runner.invoke(app, ["ingest", str(folder), "--json"])
    assert partial.exit_code == 4, partial.output
    assert json.loads(partial.stdout)["failed"] == 1

    for i in range(4):
        (folder / f"note{i}.md").unlink()
    (folder / "broken.pdf").unlink()
    held = runner.invoke(app, ["ingest", str(folder), "--json"])
    assert held.exit_code == 5, held.output
    assert json.loads(held.stdout)["deletions_held"]
    runs = json.loads(runner.invoke(app, ["runs", "--json"]).stdout)["runs"]
    assert runs[0]["state"] == "deletions_held"
    assert runs[0]["error"].startswith("deletions held: the listing lost 5 of 7 known documents")
    assert "SLUICE_MAX_DELETED_FRACTION" in runs[0]["error"]  # the way on, not just the state

    state = ingest_flow(path=str(folder), settings=Settings(), return_state=True)
    assert (state.type.value, state.name) == ("COMPLETED", "DeletionsHeld")
    assert state.result()["deletions_held"]  # type: ignore[index]


def test_retry_failed_reads_a_quarantined_document_again_for_the_tenant_it_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    """A quarantined document is skipped by every run until `retry-failed` releases it: then
    its folder is run again, for the tenant that folder's last run had."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "note.md").write_text("# Note\n\nPumps and valves.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a PDF at all")
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_INGEST_ATTEMPTS", "1")
    runner = CliRunner()
    args = ["ingest", str(folder), "--tenant", "acme", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 4, first.output
    assert [d["uri"].rsplit("/", 1)[-1] for d in json.loads(first.stdout)["documents"]["failed"]]
    skipped = json.loads(runner.invoke(app, args).stdout)["documents"]
    assert [q.rsplit("/", 1)[-1] for q in skipped["quarantined"]] == ["broken.pdf"]

    retried = runner.invoke(app, ["retry-failed", "--json"])
    assert retried.exit_code == 4, retried.output  # read again, and still broken
    assert "released 1 document(s) from quarantine" in retried.stderr
    report = json.loads(retried.stdout)
    assert [d["uri"].rsplit("/", 1)[-1] for d in report["documents"]["failed"]] == ["broken.pdf"]
    assert report["unchanged"] == 1 and report["tenant"] == "acme"
    again = runner.invoke(app, ["retry-failed"], terminal_width=200)  # quarantined again
    assert again.exit_code == 4 and "released 1 document(s)" in again.stderr
    assert "broken.pdf" in again.stdout


def test_report_artifacts_are_keyed_by_kind_source_and_deployment(tmp_path: Path) -> None:
    from config.settings import Settings
    from flows.artifacts import artifact_key

    here, there = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "b")
    real = artifact_key("ingest", here, "file:///srv/Hand Book")
    assert real.startswith("ingest-docs-file-srv-hand-book-")
    assert artifact_key("ingest", here, "file:///srv/Hand Book") == real  # stable per data dir
    assert artifact_key("ingest-plan", here, "file:///srv/Hand Book") != real
    assert artifact_key("ingest", there, "file:///srv/Hand Book") != real
    assert artifact_key("ingest", here, "other") != real
    long = artifact_key("ingest", here, "x" * 300)
    assert len(long) <= 90 and long == artifact_key("ingest", here, "x" * 300)


def test_runs_lists_each_run_with_its_state_times_counts_and_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    """A configured folder that vanishes fails the run in one line (exit 2), and the run
    history keeps it: state, error, and the flow run id to find its logs."""
    folder = tmp_path / "manuals"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    config = tmp_path / "sluice.toml"
    config.write_text(f'[[sources]]\ntype = "local"\nname = "manuals"\npath = "{folder}"\n')
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--source", "manuals"]).exit_code == 0
    (folder / "pump.md").unlink()
    folder.rmdir()

    failed = runner.invoke(app, ["ingest", "--source", "manuals"])
    assert failed.exit_code == 2, failed.output
    assert failed.output.strip().splitlines()[-1] == (
        f"ingest failed: source folder {folder} does not exist (is it mounted?)"
    )
    assert "Traceback" not in failed.output

    listed = runner.invoke(app, ["runs", "--json"])
    assert listed.exit_code == 0, listed.output
    latest, first = json.loads(listed.stdout)["runs"]
    assert (latest["state"], first["state"]) == ("failed", "completed")
    assert latest["error"].startswith("SourceUnavailable: source folder")
    assert latest["finished_at"] >= latest["started_at"] >= first["finished_at"]
    assert (first["new"], first["failed"], first["error"]) == (1, 0, "")
    assert first["flow_run_id"] and latest["flow_run_id"] != first["flow_run_id"]

    table = runner.invoke(app, ["runs"], terminal_width=200)
    # The error cell wraps where the temporary folder's name is long; its first word does not.
    assert table.exit_code == 0 and "failed" in table.stdout
    assert "SourceUnavailable: source folder" in table.stdout
    status = runner.invoke(app, ["status"], terminal_width=200)
    assert "Last ingest runs into 'docs'" in status.stdout and "completed" in status.stdout


def test_an_unexpected_error_is_one_line_naming_the_file_with_its_traceback(
    tmp_path: Path,
) -> None:
    """A corrupt manifest is no failure any command expects: exit 1, one line, and the whole
    traceback kept in the data dir's logs/ (`--debug` prints it too)."""
    import os
    import re
    import subprocess
    import sys

    data = tmp_path / "data"
    (data / "manifests").mkdir(parents=True)
    (data / "manifests" / "docs.sqlite").write_bytes(b"this is not a database" * 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    env["SLUICE_DATA_DIR"] = str(data)

    def sluice(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sluice", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    result = sluice("runs")
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    found = re.fullmatch(
        r"unexpected error: DatabaseError: file is not a database \(full traceback in (\S+); "
        r"rerun with --debug to print it; please report it\)",
        line,
    )
    assert found, line
    saved = Path(found[1])
    assert saved.parent == data / "logs" and "Traceback" in saved.read_text()

    debug = sluice("--debug", "runs")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_ingest_of_a_path_for_a_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    bad = runner.invoke(app, ["ingest", str(folder), "--tenant", "a b"])
    assert bad.exit_code == 2 and "--tenant 'a b'" in bad.output
    done = runner.invoke(app, ["ingest", str(folder), "--tenant", "acme", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["tenant"] == "acme"
    from composition.components import Components
    from config.settings import Settings

    store = Components(Settings()).store()
    try:
        (point,) = [p for page in store.read_points("docs__v1") for p in page]
        assert point.payload["tenant"] == "acme"
        assert point.payload["public_uri"] == "acme/pump.md"
    finally:
        store.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_reported_as_such_not_as_a_bug(capsys: pytest.CaptureFixture[str]) -> None:
    from sluice.cli.common import report_unexpected

    try:
        with open("/dev/full", "w") as full:  # every write fails with ENOSPC
            full.write("x")
    except OSError as error:
        code = report_unexpected(error)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "the disk is full" in err and "run the command again" in err
    assert "unexpected error" not in err


def test_ocr_on_without_tesseract_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.ocr import tesseract

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Pumps\n\nImpellers wear.\n")
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_OCR", "on")
    monkeypatch.setenv("PATH", "")
    tesseract.cache_clear()
    try:
        result = CliRunner().invoke(app, ["ingest", str(tmp_path / "docs")])
    finally:
        tesseract.cache_clear()
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert "SLUICE_OCR=on" in line and "tesseract" in line.lower(), line
