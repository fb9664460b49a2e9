"""What every state backend must do (SQLite files, PostgreSQL), one mixin per capability, in the
spirit of the store contract suite. A class per backend subclasses `StateContract` and provides
`opener`: a function from (tree, index) to a `StateDatabase`, each call a new connection as
another process would open it. `COVERS` names the `Manifest` methods each mixin exercises and
`tests/test_state_contract.py` checks that together they are all of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Thread
from typing import ClassVar

import pyarrow as pa
import pytest
from sqlalchemy import text

from index.query_log import SCHEMA, QueryLog, _write_aside, log_files
from index.query_log_index import QueryLogIndex
from ingest.manifest import DocumentRecord, Manifest
from retrieval_api.keys import KeyStore, KeyStoreError
from retrieval_api.rate_buckets import RateBuckets
from state.database import StateDatabase, Tree
from state.run_lock import IngestAlreadyRunning, RunLock
from state.schema import StateSchemaError, ensure_schema, head_revision, status

Opener = Callable[[Tree, "str | None"], StateDatabase]
ROOT = Path(__file__).resolve().parents[1]
INDEX_HEAD = head_revision("index")


def record(
    doc_id: str, source: str = "s", fingerprint: str = "f1", **more: object
) -> DocumentRecord:
    fields: dict[str, object] = dict(
        doc_id=doc_id, source=source, fingerprint=fingerprint, content_hash="h",
        config_fingerprint="cfg", doc_version="v1", chunks=2, status="indexed", updated_at=5.0,
    )  # fmt: skip
    return DocumentRecord(**{**fields, **more})  # type: ignore[arg-type]


class _Base:
    COVERS: ClassVar[set[str]] = set()

    @pytest.fixture
    def manifest(self, opener: Opener) -> Iterator[Manifest]:
        made = Manifest(opener("index", "docs"))
        yield made
        made.close()


class DocumentsContract(_Base):
    COVERS: ClassVar[set[str]] = {
        "documents", "all_documents", "put_many", "update_fingerprints", "remove",
        "release_quarantine",
    }  # fmt: skip

    def test_rows_are_a_sources_and_round_trip_exactly(self, manifest: Manifest) -> None:
        rows = [record("a"), record("a", "t"), record("b", attempts=2, last_error="boom")]
        manifest.put_many(rows)
        assert manifest.documents("s") == {"a": rows[0], "b": rows[2]}
        assert manifest.documents("t") == {"a": rows[1]}
        assert sorted(manifest.all_documents(), key=repr) == sorted(rows, key=repr)
        manifest.put_many([record("a", fingerprint="f2", status="pending", updated_at=0.0)])
        replaced = manifest.documents("s")["a"]
        assert replaced.fingerprint == "f2" and replaced.status == "pending"
        assert replaced.updated_at > 1e9  # 0 means now
        manifest.put_many([])

    def test_fingerprints_update_only_the_named_sources_rows(self, manifest: Manifest) -> None:
        manifest.put_many([record("a"), record("a", "t")])
        manifest.update_fingerprints("t", [("a", "f9"), ("missing", "f9")])
        assert manifest.documents("s")["a"].fingerprint == "f1"
        assert manifest.documents("t")["a"].fingerprint == "f9"

    def test_remove_leaves_other_sources_and_documents(self, manifest: Manifest) -> None:
        manifest.put_many([record("a"), record("b"), record("a", "t")])
        manifest.remove("s", ["a", "never"])
        manifest.remove("s", [])
        assert set(manifest.documents("s")) == {"b"} and set(manifest.documents("t")) == {"a"}

    def test_released_documents_get_fresh_attempts(self, manifest: Manifest) -> None:
        manifest.put_many(
            [
                record("ok"),
                record("q", status="quarantined", attempts=3),
                record("f", "t", status="failed"),
            ]
        )
        assert manifest.release_quarantine("s") == ["q"]
        released = manifest.documents("s")["q"]
        assert (released.status, released.attempts, released.fingerprint) == ("failed", 0, "")
        assert manifest.documents("t")["f"].attempts == 0
        assert sorted(manifest.release_quarantine()) == ["f", "q"]
        assert manifest.documents("s")["ok"] == record("ok")


class RunsContract(_Base):
    COVERS: ClassVar[set[str]] = {
        "start_run", "finish_run", "runs", "runs_from", "partition_runs",
    }  # fmt: skip

    def test_partition_runs_are_their_parents_not_listed_and_interrupt_nothing(
        self, manifest: Manifest
    ) -> None:
        parent = manifest.start_run("s")
        first = manifest.start_run("s", "flow-a", parent_run_id=parent, partition=0)
        second = manifest.start_run("s", "flow-b", parent_run_id=parent, partition=1)
        manifest.finish_run(second, {"new": 2}, "completed")
        states = {r.run_id: r.state for r in manifest.partition_runs(parent)}
        assert states == {first: "running", second: "completed"}  # siblings run side by side
        assert [r.partition for r in manifest.partition_runs(parent)] == [1, 0]
        assert [r.run_id for r in manifest.runs()] == [parent]
        assert manifest.runs()[0].state == "running"
        assert manifest.partition_runs(parent + 100) == []

    def test_runs_are_newest_first_with_their_reports(self, manifest: Manifest) -> None:
        first = manifest.start_run("s", external_id="flow-1")
        manifest.finish_run(first, {"new": 3}, "completed")
        second = manifest.start_run("t")
        manifest.finish_run(second, {"failed": 1}, "completed_with_failures", "one failed")
        runs = manifest.runs()
        assert [r.run_id for r in runs] == [second, first] and second > first
        assert runs[1].report == {"new": 3} and runs[1].external_id == "flow-1"
        assert (runs[0].state, runs[0].error) == ("completed_with_failures", "one failed")
        assert [r.run_id for r in manifest.runs(source="s")] == [first]
        assert len(manifest.runs(limit=1)) == 1

    def test_runs_from_an_id_are_oldest_first_without_partitions(self, manifest: Manifest) -> None:
        ids = [manifest.start_run("s") for _ in range(4)]
        manifest.start_run("s", parent_run_id=ids[-1], partition=0)
        manifest.finish_run(ids[2], {"new": 1}, "completed")
        assert [r.run_id for r in manifest.runs_from(ids[1])] == ids[1:]
        assert [r.run_id for r in manifest.runs_from(ids[1], limit=2)] == ids[1:3]
        assert manifest.runs_from(ids[2], 1)[0].report == {"new": 1}
        assert manifest.runs_from(ids[-1] + 100) == []

    def test_a_run_left_running_is_interrupted_by_the_next(self, manifest: Manifest) -> None:
        left = manifest.start_run("s")
        assert manifest.runs()[0].state == "running"  # this process is alive
        manifest.start_run("s")
        assert {r.run_id: r.state for r in manifest.runs()}[left] == "interrupted"

    def test_a_running_run_of_a_gone_process_here_is_interrupted_of_another_host_not(
        self, manifest: Manifest
    ) -> None:
        run = manifest.start_run("s")
        with manifest.db.transaction() as db:
            db.execute(text("UPDATE run_outcomes SET pid = 2147483000"))
        assert manifest.runs()[0].state == "interrupted"
        with manifest.db.transaction() as db:
            db.execute(text("UPDATE run_outcomes SET host = 'another-machine'"))
        assert [(r.run_id, r.state) for r in manifest.runs()] == [(run, "running")]


class VersionsContract(_Base):
    COVERS: ClassVar[set[str]] = {"record_version", "versions"}

    def test_scores_and_note_are_kept_unless_given(self, manifest: Manifest) -> None:
        manifest.record_version("docs__v1", "building", {"ndcg": 0.7}, "first")
        manifest.record_version("docs__v1", "serving")
        manifest.record_version("docs__v2", "rejected", note="worse")
        versions = manifest.versions()
        assert (versions["docs__v1"].state, versions["docs__v1"].scores) == (
            "serving",
            {"ndcg": 0.7},
        )
        assert versions["docs__v1"].note == "first" and versions["docs__v2"].note == "worse"
        manifest.record_version("docs__v1", "retired", {}, "")
        assert (manifest.versions()["docs__v1"].scores, manifest.versions()["docs__v1"].note) == (
            {},
            "",
        )


class SharingContract(_Base):
    """What two processes (here two connections) see of each other."""

    def test_a_write_is_seen_at_once_by_another_opener(self, opener: Opener) -> None:
        writer, reader = Manifest(opener("index", "docs")), Manifest(opener("index", "docs"))
        writer.put_many([record("a")])
        assert reader.documents("s") == {"a": record("a")}
        writer.close()
        reader.close()

    def test_indexes_are_apart(self, opener: Opener) -> None:
        one, other = Manifest(opener("index", "one")), Manifest(opener("index", "other-1"))
        one.put_many([record("a")])
        assert other.all_documents() == []
        one.close()
        other.close()

    def test_many_first_opens_at_once_make_the_schema_once(self, opener: Opener) -> None:
        errors: list[BaseException] = []

        def open_one() -> None:
            try:
                Manifest(opener("index", "fresh")).close()
            except BaseException as error:
                errors.append(error)

        threads = [Thread(target=open_one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], [repr(e) for e in errors]
        assert status(opener("index", "fresh")).up_to_date


class RunLockContract:
    def _lock(self, opener: Opener, wait_s: float = 0.0) -> RunLock:
        db = opener("index", "docs")
        if db.dialect == "sqlite":
            return RunLock.on_file(
                Path(str(db.engine.url.database)).with_suffix(".lock"), "docs", wait_s
            )
        return RunLock.in_database(db, "run", "docs", wait_s)

    def test_one_holder_at_a_time_and_released_on_exit(self, opener: Opener) -> None:
        with (
            self._lock(opener),
            pytest.raises(IngestAlreadyRunning, match="in progress"),
            self._lock(opener),
        ):
            pass
        with self._lock(opener):
            pass

    def test_a_waiter_gets_it_when_the_holder_lets_go(self, opener: Opener) -> None:
        held = threading.Event()

        def hold_for_a_while() -> None:
            with self._lock(opener):
                held.set()
                time.sleep(0.5)

        Thread(target=hold_for_a_while).start()
        held.wait(10)
        started = time.monotonic()
        with self._lock(opener, wait_s=10):
            assert 0.3 < time.monotonic() - started < 5

    def test_a_killed_holder_frees_it(self, opener: Opener, state_spec: str) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, state_spec],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(IngestAlreadyRunning):
                self._lock(opener).__enter__()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
            with self._lock(opener, wait_s=10):
                pass
        finally:
            holder.kill()


class RateBucketsContract:
    def test_a_bucket_outlives_the_process_that_filled_it(self, opener: Opener) -> None:
        first = RateBuckets(opener("shared", None))
        assert [first.take("k", 1, 2).admitted for _ in range(3)] == [True, True, False]
        first.close()
        second = RateBuckets(opener("shared", None))  # an API restarted, or another replica
        refused = second.take("k", 1, 2)
        assert not refused.admitted and 0 < refused.retry_after_s <= 1
        assert second.take("other", 1, 2).admitted
        assert second.take("k", 1, 2, now=time.time() + 2).admitted
        second.close()

    def test_processes_sharing_it_admit_the_rate_once_between_them(self, state_spec: str) -> None:
        seconds = 3.0
        takers = [
            subprocess.Popen(
                [sys.executable, "-c", TAKER, state_spec, str(seconds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(3)
        ]
        for taker in takers:
            assert taker.stdout is not None and taker.stdout.readline().strip() == "ready"
        for taker in takers:
            assert taker.stdin is not None
            taker.stdin.write("go\n")
            taker.stdin.flush()
        counts = [int(taker.communicate(timeout=60)[0]) for taker in takers]
        # 20/s for ~3 s plus a burst of 5, between the three: ~65, where separate buckets (or
        # lost updates of one, with no row lock) give more.
        assert all(c > 5 for c in counts), counts
        assert 50 <= sum(counts) <= 5 + 20 * (seconds + 0.5), counts


class KeysContract:
    """API keys as each backend keeps them: the data dir's file beside SQLite state, a table
    with the state in PostgreSQL."""

    def _keys(self, opener: Opener) -> KeyStore:
        db = opener("shared", None)
        if db.dialect == "sqlite":
            return KeyStore(Path(str(db.engine.url.database)).with_name("api-keys.json"))
        return KeyStore(db)

    def test_a_key_made_by_one_is_checked_and_revoked_for_every_other(self, opener: Opener) -> None:
        maker, api, other_api = (self._keys(opener) for _ in range(3))
        key, record = maker.create(["acme"], rate_per_s=5, burst=2, name="search")
        assert api.verify(key) == record and other_api.verify(key) == record
        assert api.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert api.verify(f"slk_{'a' * 12}_{'b' * 43}") is None
        second, _ = maker.create([], scope="admin")
        assert set(api.records()) == {record.key_id, second[4:16]}
        revoked = maker.revoke(record.key_id)
        assert revoked.revoked_at is not None
        assert api.verify(key) is None and other_api.verify(second) is not None
        with pytest.raises(KeyStoreError, match="no key with id"):
            maker.revoke("nonexistent00")


class QueryLogIndexContract:
    """The query log's index: rows that follow the log's files, found by any process."""

    @staticmethod
    def _row(request_id: str, at: float, key_id: str = "k1") -> dict[str, object]:
        from datetime import UTC, datetime

        return {
            "request_id": request_id, "time": datetime.fromtimestamp(at, UTC), "key_id": key_id,
            "tenants": ["acme"], "index": "docs", "chunk_ids": [f"{request_id}-c"],
            "doc_ids": [f"{request_id}-d"], "query": "x" * 300,
        }  # fmt: skip

    def test_answers_are_found_by_another_opener_newest_first(
        self, opener: Opener, tmp_path: Path
    ) -> None:
        writer = QueryLogIndex(opener("shared", None), host="api-1")
        writer.add([self._row("r1", 100.0), self._row("r2", 101.0)], tmp_path / "a.parquet")
        # A client's own request id may name two answers, by two keys.
        QueryLogIndex(opener("shared", None), host="api-2").add(
            [self._row("r1", 102.0, key_id="k2")], tmp_path / "b.parquet"
        )
        reader = QueryLogIndex(opener("shared", None))
        newest, oldest = reader.answers("r1")
        assert (newest.key_id, newest.host, newest.file) == (
            "k2",
            "api-2",
            str(tmp_path / "b.parquet"),
        )
        assert (oldest.key_id, oldest.host, oldest.time) == ("k1", "api-1", 100.0)
        assert oldest.tenants == ("acme",) and oldest.chunk_ids == ("r1-c",)
        assert oldest.doc_ids == ("r1-d",) and oldest.index == "docs"
        assert reader.answers("r3") == []

    def test_rows_follow_the_files_as_they_are_merged_and_dropped(
        self, opener: Opener, tmp_path: Path
    ) -> None:
        index = QueryLogIndex(opener("shared", None), host="api-1")
        other_host = QueryLogIndex(opener("shared", None), host="api-2")
        folder = tmp_path / "log"
        past = folder / "date=2026-01-31"
        past.mkdir(parents=True)
        for part in range(3):  # a past day's files, as a log with this index wrote them
            rows = [self._row(f"p{part}-{i}", 1000.0 + part) for i in range(5)]
            file = past / f"part-{part}-1.parquet"
            _write_aside(pa.Table.from_pylist(rows, schema=SCHEMA), file)
            index.add(rows, file)
            other_host.add([self._row(f"o{part}", 1.0)], file)  # same path, another machine
        log = QueryLog(folder, flush_s=3600, index=index)
        log.record(self._row("today", 1500.0))
        log.close()  # its flush merges the past day's files
        reader = QueryLogIndex(opener("shared", None))
        [day_file] = past.glob("*.parquet")
        merged = [a for p in range(3) for i in range(5) for a in reader.answers(f"p{p}-{i}")]
        assert len(merged) == 15 and {a.file for a in merged} == {str(day_file)}
        for part in range(3):  # another host's rows under the same path are not this log's
            [other] = reader.answers(f"o{part}")
            assert other.file == str(past / f"part-{part}-1.parquet")
        log = QueryLog(folder, max_bytes=30_000, flush_s=3600, index=index)
        for batch in range(30):
            log.record(self._row(f"t{batch}", 2000.0 + batch))
            log.flush()
        log.close()
        kept = {str(f) for f in log_files(folder)}
        assert str(day_file) not in kept and len(kept) < 30, "the bound dropped files"
        assert reader.answers("p0-0") == [], "a dropped file's rows go with it"
        found = [a for b in range(30) for a in reader.answers(f"t{b}")]
        assert reader.answers("t29") and 0 < len(found) < 30
        assert {a.file for a in found} == kept


class SchemaContract:
    def test_a_revision_this_sluice_does_not_know_is_refused(self, opener: Opener) -> None:
        Manifest(opener("index", "docs")).close()
        with opener("index", "docs").transaction() as db:
            db.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(
            StateSchemaError, match=rf"revision 9999.*does not know.*up to {INDEX_HEAD}"
        ):
            Manifest(opener("index", "docs"))

    def test_an_older_revision_is_upgraded_where_safe_else_refused(self, opener: Opener) -> None:
        from alembic import command

        from state import schema

        db = opener("index", "docs")
        if db.dialect == "postgresql":
            with db.transaction() as connection:
                connection.exec_driver_sql(f"CREATE SCHEMA {db.namespace}")
        config = schema._config("index")
        with db.transaction() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        assert status(db).current == "0001"
        if db.dialect == "sqlite":  # one machine, one installation: upgraded on open
            Manifest(db).start_run("s")
            assert status(db).current == INDEX_HEAD
            return
        with pytest.raises(StateSchemaError, match=rf"needs {INDEX_HEAD}.*`sluice state upgrade`"):
            Manifest(opener("index", "docs"))
        assert schema.upgrade(db).up_to_date
        Manifest(opener("index", "docs")).start_run("s")

    def test_the_shared_tree_is_versioned_too(self, opener: Opener) -> None:
        db = opener("shared", None)
        ensure_schema(db)
        assert status(db).up_to_date and status(db).tree == "shared"


class StateContract(
    DocumentsContract, RunsContract, VersionsContract, SharingContract, RunLockContract,
    RateBucketsContract, KeysContract, QueryLogIndexContract, SchemaContract,
):  # fmt: skip
    """Every capability; a backend's class says how to open it (`opener`, `state_spec`)."""


CONTRACTS = (DocumentsContract, RunsContract, VersionsContract)


def open_from_spec(spec: str, tree: Tree, index: str | None) -> StateDatabase:
    """`spec`: a PostgreSQL URL, or a folder for SQLite files (as a data dir holds them)."""
    if spec.startswith("postgresql"):
        return StateDatabase.postgres(spec, tree, index)
    name = f"manifests/{index}.sqlite" if tree == "index" else "rate_limits.sqlite"
    return StateDatabase.sqlite(Path(spec) / name, tree, durable=tree == "index")


HOLDER = """
import sys, time
from pathlib import Path
from state.run_lock import RunLock
from tests.state_contract import open_from_spec
db = open_from_spec(sys.argv[1], "index", "docs")
if db.dialect == "sqlite":
    lock = RunLock.on_file(Path(str(db.engine.url.database)).with_suffix(".lock"), "docs")
else:
    lock = RunLock.in_database(db, "run", "docs")
lock.__enter__()
print("held", flush=True)
time.sleep(600)
"""

TAKER = """
import sys, time
from retrieval_api.keys import KeyStore, KeyStoreError
from retrieval_api.rate_buckets import RateBuckets
from tests.state_contract import open_from_spec
buckets = RateBuckets(open_from_spec(sys.argv[1], "shared", None))
print("ready", flush=True)
sys.stdin.readline()
admitted = 0
end = time.time() + float(sys.argv[2])
while time.time() < end:
    admitted += buckets.take("key", rate_per_s=20, burst=5).admitted
print(admitted)
"""
