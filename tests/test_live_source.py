"""Live folders: the OS's file events drive syncs of only the paths that changed, through the
same manifest, write path and delete guard as any run (composition/live_source.py,
pipelines/live_sync.py, ingest/sources/folder_events.py). Real events, a real index."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from composition.components import Components
from composition.live_source import watch_source
from config.settings import Settings
from ingest.changes import plan_changes
from ingest.sources.local_folder import LocalFolderSource
from ingest.types import Scope, SourceItem
from ingest.unstructured_parser import content_hash
from pipelines.live_sync import scope_of
from pipelines.report import IngestReport

WAIT_S = 60


def _doc(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {name}\n\n{text}\n")
    return path


class Watching:
    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.reports: list[IngestReport] = []
        self.changed = threading.Condition()

    def record(self, report: IngestReport) -> None:
        with self.changed:
            self.reports.append(report)
            self.changed.notify_all()

    def until(self, test: Callable[[IngestReport], bool], what: str) -> IngestReport:
        deadline = time.monotonic() + WAIT_S
        with self.changed:
            while True:
                if found := [r for r in self.reports if test(r)]:
                    return found[-1]
                left = deadline - time.monotonic()
                assert left > 0, f"no run {what}: {[r.to_dict() for r in self.reports]}"
                self.changed.wait(left)

    def indexed(self) -> dict[str, int]:
        manifest = Components(self.settings).manifest()
        try:
            return {r.doc_id: r.chunks for r in manifest.all_documents() if r.status == "indexed"}
        finally:
            manifest.close()


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[tuple[Watching, Path]]:
    folder = tmp_path / "docs"
    for number in range(8):
        _doc(folder, f"d{number}.md", f"Pump {number} wears its impeller out.")
    settings = Settings(data_dir=tmp_path / "data")
    parts = Components(settings)
    config = parts.folder_source(folder)
    live = Watching(settings, folder)
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(watch_source(parts, config, stop, live.record)), daemon=True
    )
    thread.start()
    live.until(lambda r: not r.live and len(r.new) == 8, "reconciling the folder")
    yield live, folder
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and result, "the watcher stops when told"


def test_creates_edits_renames_and_deletes_reach_the_index_alone(
    watching: tuple[Watching, Path],
) -> None:
    live, folder = watching
    new = _doc(folder, "new.md", "A zebra crossing appears.")
    report = live.until(lambda r: r.live and [d.uri for d in r.new] == [new.as_uri()], "new")
    assert report.files_seen == 1, "only the changed path was listed"
    assert report.lag_s is not None and 0 <= report.lag_s < WAIT_S
    _doc(folder, "d1.md", "Pump 1 now has a ceramic seal.")
    report = live.until(lambda r: r.live and len(r.changed) == 1, "changed")
    assert report.changed[0].uri == (folder / "d1.md").as_uri() and not report.new
    (folder / "d2.md").unlink()
    live.until(lambda r: r.live and r.deleted == [(folder / "d2.md").as_uri()], "deleted")
    _doc(folder, "sub/a.md", "Giraffes are tall.")
    _doc(folder, "sub/b.md", "Okapis are shy.")
    live.until(lambda r: r.live and len(r.new) >= 1 and "sub/" in r.new[-1].uri, "sub/ new")
    live.until(lambda r: (folder / "sub/b.md").as_uri() in live.indexed(), "sub/b.md")
    (folder / "sub").rename(folder / "moved")  # one event for the folder, none for its files
    moved = {(folder / "moved" / n).as_uri() for n in ("a.md", "b.md")}
    live.until(lambda r: r.live and moved <= {d.uri for d in r.new}, "the moved folder")
    indexed = live.indexed()
    assert moved <= indexed.keys() and not any("/sub/" in uri for uri in indexed)
    assert (folder / "d2.md").as_uri() not in indexed and new.as_uri() in indexed
    assert len(indexed) == 10


def test_a_burst_is_a_few_batches_not_one_run_per_file(watching: tuple[Watching, Path]) -> None:
    """A thousand files at once (a branch switch, an unpacked archive)."""
    live, folder = watching
    before = len(live.reports)
    for number in range(1000):
        _doc(folder, f"burst/{number:04}.md", f"Burst document {number} about valves.")
    live.until(lambda r: len(live.indexed()) == 1008, "every burst document indexed")
    runs = [r for r in live.reports[before:] if r.live]
    assert sum(len(r.new) for r in runs) == 1000 and len(runs) <= 10, [len(r.new) for r in runs]


def test_a_file_still_being_written_is_read_whole(watching: tuple[Watching, Path]) -> None:
    live, folder = watching
    path = folder / "slow.md"
    with path.open("w") as file:  # pauses shorter than the settle time, longer than a batch
        for part in range(5):
            file.write(f"# Slow\n\nPart {part} of a slowly written file.\n")
            file.flush()
            time.sleep(0.15)
    whole = path.read_text()
    live.until(lambda r: path.as_uri() in live.indexed(), "the slow file")
    time.sleep(1.5)  # any later batch of it would have come by now
    read = [d for r in live.reports if r.live for d in r.new + r.changed if d.uri == path.as_uri()]
    assert len(read) == 1, "read once, after the writer finished"
    manifest = Components(live.settings).manifest()
    try:
        [record] = [r for r in manifest.all_documents() if r.doc_id == path.as_uri()]
    finally:
        manifest.close()
    assert "Part 4" in whole and record.content_hash == content_hash(path), "the whole file"


def test_deletions_weigh_against_the_whole_source_not_the_batch(tmp_path: Path) -> None:
    from ingest.manifest import DocumentRecord

    known = {
        f"file:///d{n}": DocumentRecord(f"file:///d{n}", "s", "f", "h", "c", "v", 1, "indexed")
        for n in range(10)
    }
    batch = {k: v for k, v in known.items() if k == "file:///d0"}
    alone = plan_changes([], batch, lambda item: "c", 0.2)
    assert alone.deletions_held, "one of one known is all of them"
    weighed = plan_changes([], batch, lambda item: "c", 0.2, population=len(known))
    assert weighed.deleted == ["file:///d0"] and not weighed.deletions_held


def test_a_scope_lists_only_its_paths_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("a.md", "skip.txt", "sub/b.md", "sub/c.md", "other/d.md"):
        _doc(root, name, "text")
    outside = _doc(tmp_path, "outside.md", "text")
    source = LocalFolderSource(root, include=["**/*.md"])
    scope = scope_of([root / "a.md", root / "skip.txt", root / "sub", root / "gone.md", outside])
    listed = source.list_scope(scope)
    assert sorted(i.name for i in listed) == ["a.md", "sub/b.md", "sub/c.md"]
    assert all(isinstance(i, SourceItem) for i in listed)
    assert scope.holds((root / "sub" / "x.md").as_uri()) and scope.holds(
        (root / "gone.md").as_uri()
    )
    assert not scope.holds((root / "other" / "d.md").as_uri())
    assert Scope(frozenset()).holds("file:///x") is False
    os.chmod(root / "sub" / "c.md", 0o000)
    try:
        if not os.access(root / "sub" / "c.md", os.R_OK):  # root reads everything
            names = [i.name for i in source.list_scope(scope)]
            assert "sub/c.md" not in names and source.skipped()
    finally:
        os.chmod(root / "sub" / "c.md", 0o644)


def test_a_storm_that_may_have_overflowed_the_event_queue_is_followed_by_a_reconcile(
    tmp_path: Path,
) -> None:
    from ingest.sources.folder_events import ChangeBatch, folder_events
    from pipelines.live_sync import LiveOptions, run_live

    folder = tmp_path / "docs"
    folder.mkdir()
    stop = threading.Event()
    events = folder_events(folder, stop, debounce_ms=200, storm=50)
    assert not next(events).paths  # watching now
    for number in range(80):
        _doc(folder, f"s{number:02}.md", "A storm of files.")
    deadline = time.monotonic() + WAIT_S
    while not (batch := next(events)).paths:
        assert time.monotonic() < deadline, "no batch"
    stop.set()
    assert batch.gap and len(batch.paths) >= 50, "a batch of 50 paths or more"

    synced: list[Scope | None] = []

    def sync(scope: Scope | None, seen_at: float | None) -> IngestReport | None:
        synced.append(scope)
        return None if len(synced) == 2 else IngestReport(index="docs", source="s")

    small = ChangeBatch(frozenset({folder / "s00.md"}), time.time())
    stormy = ChangeBatch(frozenset({folder / "s01.md"}), time.time(), gap=True)
    run_live(sync, [small, stormy, small, small], threading.Event(), LiveOptions(settle_s=0))
    kinds = ["all" if scope is None else "scope" for scope in synced]
    assert kinds == ["all", "all", "all", "scope"], "owed until one runs (the 2nd was refused)"
