"""Reading under a per-document budget: a read that hangs, grows or crashes is stopped, reported
with its reason, and every other document is still read; a caller that stops early stops it all."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from ingest.changes import Candidate, plan_changes
from ingest.reader import DocumentReader
from ingest.sources.local_folder import LocalFolderSource
from pipelines.document_stream import ReadBudget, read_documents
from tests.stalling_parser import StallingParser


def _candidates(folder: Path) -> tuple[DocumentReader, list[Candidate]]:
    source = LocalFolderSource(folder)
    plan = plan_changes(source.list_items(), {}, lambda item: "config")
    return DocumentReader(source, StallingParser(), attempts=1), plan.candidates


def _folder(tmp_path: Path, names: list[str]) -> Path:
    for name in names:
        (tmp_path / name).write_text(f"text of {name}")
    return tmp_path


def _outcomes(results) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {Path(r.candidate.item.name).name: r.error for r in results}


def test_a_read_past_the_time_limit_is_stopped_and_the_rest_are_read(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["a.txt", "stuck.hang", "b.txt", "c.txt"])
    reader, candidates = _candidates(folder)
    started = time.monotonic()
    outcomes = _outcomes(read_documents(reader, candidates, 2, ReadBudget(seconds=1.5)))
    assert time.monotonic() - started < 60
    assert outcomes["a.txt"] == outcomes["b.txt"] == outcomes["c.txt"] == ""
    assert "longer than 1.5 s" in outcomes["stuck.hang"]
    assert "SLUICE_PARSE_TIMEOUT_S" in outcomes["stuck.hang"]


def test_one_worker_is_enough_to_enforce_the_budget(tmp_path: Path) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["stuck.hang", "a.txt"]))
    outcomes = _outcomes(read_documents(reader, candidates, 1, ReadBudget(seconds=1)))
    assert outcomes["a.txt"] == ""
    assert "longer than 1 s" in outcomes["stuck.hang"]


def test_a_read_past_the_memory_limit_is_stopped(tmp_path: Path) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["a.txt", "greedy.hog"]))
    outcomes = _outcomes(
        read_documents(reader, candidates, 2, ReadBudget(seconds=20, memory_mb=400))
    )
    assert outcomes["a.txt"] == ""
    assert "over the per-document memory limit of 400 MB" in outcomes["greedy.hog"]


def test_a_worker_that_dies_fails_its_document_only(tmp_path: Path) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["a.crash", "b.txt", "c.txt"]))
    outcomes = _outcomes(read_documents(reader, candidates, 1, ReadBudget(seconds=60)))
    assert outcomes["b.txt"] == outcomes["c.txt"] == ""
    assert "exited with code 3" in outcomes["a.crash"]


def test_stopping_early_kills_the_workers_at_once(tmp_path: Path) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["a.txt", "x.hang", "y.hang"]))
    stream = read_documents(reader, candidates, 3, ReadBudget(seconds=3600))
    next(stream)
    workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 3
    started = time.monotonic()
    stream.close()  # as when the embedding fails mid-run
    assert time.monotonic() - started < 10
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)


def test_no_more_documents_are_read_ahead_than_the_window(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (marks := tmp_path / "marks").mkdir()
    folder = _folder(tmp_path / "docs", [f"{i:02}.txt" for i in range(12)])
    reader, candidates = _candidates(folder)
    stream = read_documents(reader, candidates, 2, ReadBudget(seconds=60), window=3)
    next(stream)
    time.sleep(3)  # a slow caller: the workers would otherwise read everything meanwhile
    assert 2 <= len(list(marks.iterdir())) <= 4  # the one taken, and three waiting at most
    rest = list(stream)
    assert len(rest) == 11
    assert all(r.error == "" for r in rest)
