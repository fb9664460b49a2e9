"""Incremental sync: only what changed is read, parsed and embedded; deletions are guarded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from composition.components import Components
from config.settings import Settings
from index.contracts import MatchAny, PayloadFilter
from ingest.manifest import Manifest
from pipelines.report import IngestReport
from state.run_lock import IngestAlreadyRunning, RunLock
from tests.conftest import ingest_folder


def _write(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {name}\n\n{body}\n")


def _corpus(folder: Path, count: int = 6) -> None:
    for i in range(count):
        _write(folder, f"doc{i}.md", f"Document {i} talks about topic{i} and shared words.")


def _sync(settings: Settings, folder: Path, embedder, **kwargs) -> IngestReport:  # type: ignore[no-untyped-def]
    report: IngestReport = ingest_folder(settings, folder, embedder, **kwargs)
    return report


def _count(settings: Settings, doc_id: str | None = None) -> int:
    store = Components(settings).store()
    try:
        collection = store.resolve_alias(settings.index_name)
        assert collection is not None
        flt = PayloadFilter(must=[MatchAny("doc_id", [doc_id])]) if doc_id else None
        return store.count(collection, flt)
    finally:
        store.close()


def test_edit_delete_add_are_each_handled_and_nothing_else_is_touched(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder)
    first = _sync(settings, folder, embedder)
    assert (len(first.new), len(first.changed), first.unchanged) == (6, 0, 0)
    assert _count(settings) == 6

    _write(folder, "doc1.md", "Document 1 now talks about something else entirely.")
    (folder / "doc2.md").unlink()
    _write(folder, "doc9.md", "A brand new document about topic9.")
    second = _sync(settings, folder, embedder)
    assert [d.uri.rsplit("/", 1)[-1] for d in second.new] == ["doc9.md"]
    assert [(d.uri.rsplit("/", 1)[-1], d.reason) for d in second.changed] == [
        ("doc1.md", "content")
    ]
    assert [u.rsplit("/", 1)[-1] for u in second.deleted] == ["doc2.md"]
    assert second.unchanged == 4 and second.embedded == 2, "only new chunk texts are embedded"
    assert _count(settings) == 6
    assert _count(settings, (folder / "doc2.md").resolve().as_uri()) == 0

    third = _sync(settings, folder, embedder)
    assert (len(third.new), len(third.changed), third.unchanged, third.embedded) == (0, 0, 6, 0)


def test_a_touched_but_identical_file_is_hashed_not_parsed(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder, 2)
    _sync(settings, folder, embedder)
    path = folder / "doc0.md"
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 100))
    report = _sync(settings, folder, embedder)
    assert report.unchanged == 2 and not report.changed and report.chunks == 0
    again = _sync(settings, folder, embedder)
    assert again.unchanged == 2 and again.stage_seconds["read_parse"] == 0, "fingerprint updated"


def test_a_settings_change_reprocesses_exactly_the_documents_it_affects(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder, 3)
    (folder / "paper.pdf").write_bytes((Path(__file__).parent / "data" / "tiny.pdf").read_bytes())
    first = _sync(settings, folder, embedder)
    assert len(first.new) == 4
    ocr = _sync(settings.model_copy(update={"parse_strategy": "auto"}), folder, embedder)
    assert [(d.uri.rsplit("/", 1)[-1], d.reason) for d in ocr.changed] == [("paper.pdf", "config")]
    assert ocr.unchanged == 3
    rechunked = _sync(
        settings.model_copy(update={"parse_strategy": "auto", "chunk_overlap_tokens": 8}),
        folder,
        embedder,
    )
    assert len(rechunked.changed) == 4 and rechunked.unchanged == 0
    assert _count(settings) == 4, "each document's old version was retired"


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder, 6)
    _sync(settings, folder, embedder)
    _write(folder, "doc0.md", "Edited.")
    (folder / "doc1.md").unlink()
    _write(folder, "new.md", "New.")
    manifest_before = Manifest(settings.manifest_path())
    rows_before = manifest_before.all_documents()
    runs_before = len(manifest_before.runs())
    manifest_before.close()

    plan = _sync(settings, folder, embedder, dry_run=True)
    assert plan.dry_run
    assert (len(plan.new), len(plan.changed), plan.unchanged, len(plan.deleted)) == (1, 1, 4, 1)
    assert plan.embedded == 0 and plan.chunks == 0
    manifest = Manifest(settings.manifest_path())
    assert manifest.all_documents() == rows_before and len(manifest.runs()) == runs_before
    manifest.close()
    assert _count(settings) == 6


def test_a_listing_that_shrank_too_much_deletes_nothing(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder, 6)
    _sync(settings, folder, embedder)
    for i in range(3):
        (folder / f"doc{i}.md").unlink()
    held = _sync(settings, folder, embedder)
    assert held.deleted == [] and "3 of 6" in held.deletions_held
    assert _count(settings) == 6
    allowed = _sync(settings.model_copy(update={"max_deleted_fraction": 0.6}), folder, embedder)
    assert len(allowed.deleted) == 3 and _count(settings) == 3


def test_a_failing_document_is_quarantined_until_retried(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder, 2)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 not a pdf")
    first = _sync(settings, folder, embedder)
    assert [d.uri.rsplit("/", 1)[-1] for d in first.failed] == ["broken.pdf"]
    second = _sync(settings, folder, embedder)
    assert not second.failed and [q.rsplit("/", 1)[-1] for q in second.quarantined] == [
        "broken.pdf"
    ]
    manifest = Manifest(settings.manifest_path())
    assert len(manifest.release_quarantine()) == 1
    manifest.close()
    third = _sync(settings, folder, embedder)
    assert [(d.uri.rsplit("/", 1)[-1]) for d in third.failed] == ["broken.pdf"]
    assert third.failed[0].reason, "the parser's reason is kept"


def test_an_interrupted_document_is_redone(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """A manifest row left `pending` (a crash between writing points and recording them)."""
    import dataclasses

    folder, settings = tmp_path / "src", Settings(data_dir=tmp_path / "data")
    _corpus(folder, 2)
    _sync(settings, folder, embedder)
    manifest = Manifest(settings.manifest_path())
    row = manifest.all_documents()[0]
    manifest.put_many([dataclasses.replace(row, status="pending")])
    manifest.close()
    report = _sync(settings, folder, embedder)
    assert [d.reason for d in report.changed] == ["interrupted"]
    assert _count(settings) == 2, "redoing writes the same point ids"


def test_two_runs_on_one_index_are_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with (
        RunLock.on_file(settings.run_lock_path(), "docs"),
        pytest.raises(IngestAlreadyRunning, match="in progress"),
        RunLock.on_file(settings.run_lock_path(), "docs"),
    ):
        pass
    with RunLock.on_file(settings.run_lock_path(), "docs"):
        pass
    import threading

    held = threading.Event()

    def hold_briefly() -> None:
        with RunLock.on_file(settings.run_lock_path(), "docs"):
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=hold_briefly)
    thread.start()
    held.wait()
    started = time.monotonic()
    with RunLock.on_file(settings.run_lock_path(), "docs", wait_s=30):
        assert time.monotonic() - started >= 0.3, "a scheduled run waits for the lock"
    thread.join()


def test_a_run_whose_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    """A run left `running` by a process that is gone is interrupted, not running forever;
    the next run under the lock records it so."""
    import subprocess
    import sys

    path = tmp_path / "manifest.sqlite"
    script = (
        "import sys; from pathlib import Path; from ingest.manifest import Manifest; "
        "Manifest(Path(sys.argv[1])).start_run('killed')"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    manifest = Manifest(path)
    (dead,) = manifest.runs()
    assert (dead.source, dead.state, dead.finished_at) == ("killed", "interrupted", None)

    live = manifest.start_run("alive", external_id="flow-run-1")
    assert [(r.source, r.state) for r in manifest.runs()] == [
        ("alive", "running"),
        ("killed", "interrupted"),
    ]
    manifest.finish_run(live, {"new": 1}, "completed")
    latest = manifest.runs(source="alive")
    assert [(r.state, r.external_id, r.report) for r in latest] == [
        ("completed", "flow-run-1", {"new": 1})
    ]
    manifest.close()
