"""A source synced as partitions that finish in any order, one failing and retried alone, leaves
the index and manifest exactly as one unpartitioned run does; deletions and the mass-delete
guard are decided once, by the parent; the parent's run sums its partitions."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from composition.components import Components
from config.settings import Settings
from index.write.target import IndexTarget
from ingest.sources.local_folder import LocalFolderSource
from pipelines.ingest_sync import IngestParts, Partition, SyncOptions, partition_of, sync_source
from pipelines.partitioned_sync import ABANDONED, sync_partitioned
from pipelines.report import IngestReport
from tests.conftest import ingest_folder


def _corpus(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"doc{i}.md").write_text(f"# Doc {i}\n\nDocument {i} is about topic{i}.\n")


def _parts(settings: Settings, store, embedder) -> IngestParts:  # type: ignore[no-untyped-def]
    """Each partition's own target, as each worker process would have."""
    parts = Components(settings)
    target = IndexTarget(store, settings.index_name, embedder, parts.bm25_params())
    return IngestParts(parts.parser(), parts.chunker(embedder), target, parts.config_fingerprint)


def _partitioned(  # type: ignore[no-untyped-def]
    settings: Settings, folder: Path, embedder, partitions: int, seed: int, dying: set[int]
) -> IngestReport:
    """A parent run whose launcher runs the partitions in this process in a shuffled order;
    a partition in `dying` dies once after starting (its run left `running`, nothing written)."""
    parts = Components(settings)
    store, manifest = parts.store(), parts.manifest()
    options = SyncOptions(parse_workers=1, backoff_s=0.0)
    dying = set(dying)

    def launch(indexes: list[int], parent_run_id: int) -> dict[int, bool]:
        done = {}
        for index in random.Random(seed).sample(indexes, len(indexes)):
            if index in dying:
                dying.discard(index)
                manifest.start_run("test", None, parent_run_id, index)
                done[index] = False
                continue
            part = Partition(index, partitions, parent_run_id)
            sync_source(
                LocalFolderSource(folder),
                "test",
                _parts(settings, store, embedder),
                manifest,
                replace(options, partition=part),
            )
            done[index] = True
        return done

    try:
        return sync_partitioned(
            LocalFolderSource(folder),
            "test",
            _parts(settings, store, embedder),
            manifest,
            options,
            partitions,
            launch,
        )
    finally:
        manifest.close()
        store.close()


def _index_state(settings: Settings) -> tuple[int, dict[str, int]]:
    parts = Components(settings)
    store, manifest = parts.store(), parts.manifest()
    try:
        collection = store.resolve_alias(settings.index_name)
        assert collection is not None
        rows = manifest.documents("test")
        assert {r.status for r in rows.values()} <= {"indexed"}
        return store.count(collection), {doc_id: r.chunks for doc_id, r in rows.items()}
    finally:
        manifest.close()
        store.close()


@pytest.mark.parametrize("seed", [0, 1])
def test_partitions_in_any_order_with_one_retried_equal_one_run(  # type: ignore[no-untyped-def]
    tmp_path: Path, embedder, seed: int
) -> None:
    folder = tmp_path / "docs"
    _corpus(folder, 12)
    whole = Settings(data_dir=tmp_path / "whole")
    split = Settings(data_dir=tmp_path / "split")

    one = ingest_folder(whole, folder, embedder)
    report = _partitioned(split, folder, embedder, 3, seed, dying={1})
    assert (len(report.new), report.chunks, report.files_seen) == (12, one.chunks, 12)
    assert _index_state(split) == _index_state(whole)
    by_partition = {p["partition"]: p for p in report.partitions}
    assert by_partition[1]["runs"] == 2 and by_partition[0]["runs"] == 1
    assert sum(p["new"] for p in report.partitions) == 12
    assert all(p["state"] == "completed" for p in report.partitions)

    (folder / "doc0.md").write_text("# Doc 0\n\nRewritten about something else.\n")
    for gone in ("doc1.md", "doc2.md"):
        (folder / gone).unlink()
    ingest_folder(whole, folder, embedder)
    again = _partitioned(split, folder, embedder, 3, seed + 7, dying=set())
    assert (len(again.changed), len(again.deleted), again.unchanged) == (1, 2, 9)
    assert _index_state(split) == _index_state(whole)

    manifest = Components(split).manifest()
    try:
        runs = manifest.runs()  # the parents only, each with its partitions summed
        reports = [r.report or {} for r in runs]
        assert [(len(r["partitions"]), r["new"]) for r in reports] == [(3, 0), (3, 12)]
        assert [r.state for r in runs] == ["completed", "completed"]
        attempts = manifest.partition_runs(runs[1].run_id)
        assert len(attempts) == 4  # one partition ran twice
        died = [r for r in attempts if r.partition == 1 and r.state != "completed"]
        assert [(r.state, r.error) for r in died] == [("failed", ABANDONED)], "none left running"
    finally:
        manifest.close()


def test_the_mass_delete_guard_is_decided_once_for_the_whole_source(  # type: ignore[no-untyped-def]
    tmp_path: Path, embedder
) -> None:
    folder = tmp_path / "docs"
    _corpus(folder, 10)
    settings = Settings(data_dir=tmp_path / "data", max_deleted_fraction=0.2)
    _partitioned(settings, folder, embedder, 2, 0, dying=set())
    for i in range(6):
        (folder / f"doc{i}.md").unlink()
    held = _partitioned(settings, folder, embedder, 2, 0, dying=set())
    assert held.deletions_held and held.deleted == []
    assert len(_index_state(settings)[1]) == 10  # nothing deleted, by the parent or a partition


def test_a_partition_that_keeps_failing_fails_the_run(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    _corpus(folder, 4)
    settings = Settings(data_dir=tmp_path / "data")
    parts = Components(settings)
    store, manifest = parts.store(), parts.manifest()
    try:
        report = sync_partitioned(
            LocalFolderSource(folder),
            "test",
            _parts(settings, store, embedder),
            manifest,
            SyncOptions(),
            2,
            lambda indexes, parent: {index: index != 1 for index in indexes},
        )
        run = manifest.runs()[0]
        assert run.state == "failed" and run.error == "partitions [1] failed 3 times"
        assert report.partitions[1]["state"] == "not run"
    finally:
        manifest.close()
        store.close()


@given(st.lists(st.text(min_size=1), min_size=1, max_size=30), st.integers(1, 64))
def test_every_document_is_in_one_stable_partition(doc_ids: list[str], count: int) -> None:
    for doc_id in doc_ids:
        index = partition_of(doc_id, count)
        assert 0 <= index < count
        assert Partition(index, count, 1).holds(doc_id)
        assert not any(Partition(i, count, 1).holds(doc_id) for i in range(count) if i != index)
    # The same in every process and version: a document's rows stay its partition's.
    assert partition_of("file:///srv/docs/a.md", 7) == PINNED


PINNED = 5  # blake2b-64 of the id, modulo 7


FIRST_WRITE = """
import sys, time
from pathlib import Path
import index.write.target as target_module
from composition.components import Components
from config.settings import Settings
from ingest.sources.local_folder import LocalFolderSource
settings = Settings(data_dir=Path(sys.argv[1]))
parts = Components(settings)
store = parts.store()
embedder = parts.index_embedder(store)
source = LocalFolderSource(Path(sys.argv[2]))
parsed = parts.parser().parse(source.fetch(source.list_items()[0], Path(sys.argv[2])))
chunks = parts.chunker(embedder).run(parsed)
target = parts.index_target(store, embedder, None)
making = target_module.create_next_version
def slowly(*args, **kwargs):
    # Each writer looks (no collection yet), then makes a version 1.5 s after the one before:
    # without the creation lock the later ones find version 1 made and make versions 2 and 3.
    time.sleep(0.5 + 1.5 * int(sys.argv[3]))
    return making(*args, **kwargs)
target_module.create_next_version = slowly
print("ready", flush=True)
sys.stdin.readline()
print(target.writer(chunks).collection, flush=True)
sys.stdin.readline()
store.close()
"""


def test_writers_without_a_run_lock_make_one_first_collection(tmp_path: Path) -> None:
    """Partitions of a first run write a new index at once, each in a process of its own and
    under no run lock: their first writes find or make one collection between them under the
    index's creation lock, never one each: a writer that made version 2 and moved the alias to
    it would leave the others' points in version 1, out of the index's answers."""
    import subprocess
    import sys

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "d.md").write_text("# D\n\nA few words about pumps.\n")
    data = tmp_path / "data"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_WRITE, str(data), str(tmp_path / "docs"), str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for i in range(3)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for writer in writers:  # all at once
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        made = [writer.stdout.readline().strip() for writer in writers if writer.stdout]
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("done\n")
            writer.stdin.flush()
            writer.wait(timeout=120)
    finally:
        for writer in writers:
            writer.kill()
    assert made == ["docs__v1"] * 3
