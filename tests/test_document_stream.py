"""Reading under a per-document budget: a read that spins, hangs, grows or crashes is stopped,
reported with its reason, and every other document is still read; a read slowed only by a busy
machine is not; a caller that stops early, or is killed, stops it all."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from ingest.changes import Candidate, plan_changes
from ingest.reader import DocumentReader
from ingest.sources.local_folder import LocalFolderSource
from pipelines.document_stream import ReadBudget, read_documents
from tests.stalling_parser import StallingParser

ROOT = Path(__file__).parents[1]


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


def _workers(of: psutil.Process) -> list[psutil.Process]:
    return [p for p in of.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} was never read"
        time.sleep(0.05)


def test_a_read_that_burns_cpu_past_the_limit_is_stopped_and_the_rest_are_read(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, ["a.txt", "stuck.spin", "b.txt", "c.txt"])
    reader, candidates = _candidates(folder)
    started = time.monotonic()
    outcomes = _outcomes(read_documents(reader, candidates, 2, ReadBudget(seconds=1.5)))
    assert time.monotonic() - started < 60
    assert outcomes["a.txt"] == outcomes["b.txt"] == outcomes["c.txt"] == ""
    assert "longer than 1.5 s of CPU time" in outcomes["stuck.spin"]
    assert "SLUICE_PARSE_TIMEOUT_S" in outcomes["stuck.spin"]


def test_one_worker_is_enough_to_enforce_the_budget(tmp_path: Path) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["stuck.spin", "a.txt"]))
    outcomes = _outcomes(read_documents(reader, candidates, 1, ReadBudget(seconds=1)))
    assert outcomes["a.txt"] == ""
    assert "longer than 1 s of CPU time" in outcomes["stuck.spin"]


def test_a_read_slowed_only_by_a_busy_machine_is_not_stopped(tmp_path: Path) -> None:
    """Its worker is stopped (SIGSTOP) for 4 s, as a machine too busy to run it would: time
    that passes without CPU for it does not count against its 2 s of CPU."""
    (tmp_path / "marks").mkdir()
    (docs := tmp_path / "docs").mkdir()
    (docs / "slow.burn").write_text("0.5")
    reader, candidates = _candidates(docs)

    def starve_the_worker() -> None:
        _wait_for(tmp_path / "marks" / "slow.burn")
        [worker] = _workers(psutil.Process())
        worker.suspend()
        time.sleep(4)
        worker.resume()

    starving = threading.Thread(target=starve_the_worker)
    starving.start()
    [result] = read_documents(reader, candidates, 1, ReadBudget(seconds=2))
    starving.join()
    assert result.error == ""
    assert result.seconds > 4, "the read took longer than its CPU limit in wall time"


def test_a_read_blocked_without_using_cpu_is_stopped_by_the_wall_time_backstop(
    tmp_path: Path,
) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["stuck.hang", "a.txt"]))
    budget = ReadBudget(seconds=0.5, wall_factor=4)
    started = time.monotonic()
    outcomes = _outcomes(read_documents(reader, candidates, 1, budget))
    assert time.monotonic() - started < 60
    assert outcomes["a.txt"] == ""
    assert "longer than 2 s of wall time" in outcomes["stuck.hang"]
    assert "4 × SLUICE_PARSE_TIMEOUT_S" in outcomes["stuck.hang"]


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


def test_a_second_worker_starts_once_reading_is_slow_and_stopping_early_kills_both(
    tmp_path: Path,
) -> None:
    reader, candidates = _candidates(_folder(tmp_path, ["a.txt", "x.hang", "y.hang"]))
    stream = read_documents(reader, candidates, 3, ReadBudget(seconds=3600))
    try:
        next(stream)
        deadline = time.monotonic() + 60
        while len(workers := _workers(psutil.Process())) < 2:
            assert time.monotonic() < deadline, "no second worker for the waiting document"
            time.sleep(0.1)
        time.sleep(3)
        assert len(_workers(psutil.Process())) == 2, "a third worker with nothing to read"
    finally:
        started = time.monotonic()
        stream.close()  # as when the embedding fails mid-run
    assert time.monotonic() - started < 10
    assert all(_gone(p) for p in workers)


def test_no_more_documents_are_read_ahead_than_the_window(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (marks := tmp_path / "marks").mkdir()
    folder = _folder(tmp_path / "docs", [f"{i:02}.txt" for i in range(12)])
    reader, candidates = _candidates(folder)
    stream = read_documents(reader, candidates, 2, ReadBudget(seconds=60), window=3)
    next(stream)
    time.sleep(3)  # a slow caller: the workers would otherwise read everything meanwhile
    assert 2 <= len(list(marks.iterdir())) <= 4  # the one taken, and three waiting at most
    assert len(_workers(psutil.Process())) == 1, "a second worker for files read in an instant"
    rest = list(stream)
    assert len(rest) == 11
    assert all(r.error == "" for r in rest)


_READ_IN_A_CHILD = """
import sys
from pathlib import Path
from tests.test_document_stream import _candidates
from pipelines.document_stream import ReadBudget, read_documents
reader, candidates = _candidates(Path(sys.argv[1]))
list(read_documents(reader, candidates, 2, ReadBudget(seconds=3600)))
"""


def test_workers_die_with_a_killed_parent_even_mid_parse(tmp_path: Path) -> None:
    """An ingest killed with SIGKILL while its workers are deep in a parser library's C code,
    where no thread of theirs can run to notice: the workers go within ~2 s all the same."""
    (marks := tmp_path / "marks").mkdir()
    (docs := tmp_path / "docs").mkdir()
    _folder(docs, ["x.spin", "y.spin"])
    child = subprocess.Popen([sys.executable, "-c", _READ_IN_A_CHILD, str(docs)], cwd=ROOT)
    try:
        _wait_for(marks / "x.spin")
        _wait_for(marks / "y.spin")
        workers = _workers(psutil.Process(child.pid))
        assert len(workers) == 2
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 2
    while not all(_gone(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in workers if not _gone(p)]
    for process in survivors:  # leave nothing burning behind a failed test
        process.kill()
    assert not survivors, "parse workers outlived their killed parent"


_GRANDCHILD = """
import sys, time
from pipelines.read_worker import die_with_parent
print("started", flush=True)
time.sleep(1)  # its parent exits meanwhile
die_with_parent(int(sys.argv[1]))
print("outlived its parent", flush=True)
"""

_ORPHANING_PARENT = f"""
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", {_GRANDCHILD!r}, str(os.getpid())])
"""


def test_a_worker_whose_parent_died_before_it_could_watch_it_exits() -> None:
    """The race the death signal leaves open: the parent gone before the worker asked for it."""
    parent = subprocess.run(
        [sys.executable, "-c", _ORPHANING_PARENT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # its output ends only once the grandchild, which shares it, has exited too
    assert parent.stdout == "started\n", parent.stderr


def test_a_kept_pool_reads_batch_after_batch_in_the_same_workers_under_the_budget(
    tmp_path: Path,
) -> None:
    from pipelines.document_stream import ReadPool

    me = psutil.Process()
    pool = ReadPool(1, ReadBudget(seconds=1.5))

    def batch(names: list[str]) -> dict[str, str]:
        _folder(tmp_path, names)
        reader, candidates = _candidates(tmp_path)
        return _outcomes(pool.read(reader, [c for c in candidates if c.item.name in names]))

    try:
        assert batch(["a.txt", "b.txt"]) == {"a.txt": "", "b.txt": ""}
        [worker] = _workers(me)
        assert batch(["c.txt"]) == {"c.txt": ""}
        assert _workers(me) == [worker], "the worker waited for the next batch"
        outcomes = batch(["stuck.spin", "d.txt"])
        assert "longer than 1.5 s of CPU time" in outcomes["stuck.spin"]
        assert outcomes["d.txt"] == "" and _gone(worker)
    finally:
        pool.close()
    assert all(_gone(w) for w in _workers(me)), "closing the pool stops its workers"
