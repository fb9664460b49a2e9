"""The per-index manifest: what each source document was when last seen, and the run history.

SQLite, one file per index. Each write is its own transaction, and a document's row changes only
after its points are in the index, so a crash leaves a row that is behind, never ahead: the next run
redoes that document's work, and deterministic point ids make the redo write the same points.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DocumentStatus = Literal["pending", "indexed", "failed", "quarantined"]
"""`pending`: its points are being written; a run that finds it so redoes the document."""

_DOCUMENTS = """
CREATE TABLE IF NOT EXISTS {name} (
    doc_id TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    doc_version TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, doc_id)
);
"""
"""A document is a source's: two sources listing the same file have a row each."""

_SCHEMA = (
    _DOCUMENTS.format(name="documents")
    + """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    report TEXT
);
CREATE TABLE IF NOT EXISTS run_outcomes (
    run_id INTEGER PRIMARY KEY REFERENCES runs (run_id),
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    external_id TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    collection TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    scores TEXT NOT NULL DEFAULT '{}',
    note TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
"""
)

RunState = Literal[
    "running", "completed", "completed_with_failures", "deletions_held", "failed", "interrupted"
]
"""`interrupted`: the process that ran it ended without finishing it (killed, or the machine
stopped); the next run redoes whatever it left behind."""

VersionState = Literal["building", "serving", "retired", "rejected", "dropped"]
"""`building`: a re-embed is filling it; `retired`: it served before and is kept for rollback."""


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    source: str
    fingerprint: str
    content_hash: str
    config_fingerprint: str
    doc_version: str
    chunks: int
    status: DocumentStatus
    attempts: int = 0
    last_error: str = ""
    updated_at: float = 0.0


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    source: str
    started_at: float
    finished_at: float | None
    dry_run: bool
    report: dict[str, Any] | None
    state: RunState = "running"
    error: str = ""
    external_id: str | None = None
    """The orchestrator's id for the run (a Prefect flow run id), to find its logs."""


@dataclass(frozen=True)
class VersionRecord:
    collection: str
    state: VersionState
    scores: dict[str, Any]
    note: str
    updated_at: float


class Manifest:
    """>>> manifest = Manifest(Path(".sluice/manifests/docs.sqlite"))  # doctest: +SKIP"""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._key_documents_by_source()

    def _key_documents_by_source(self) -> None:
        """A manifest written before documents were a source's (`doc_id` alone was the key) is
        rewritten in place, once, keeping every row as it is: each doc_id had one row, so it
        stays unique under (source, doc_id)."""
        if _source_is_keyed(self._db):
            return
        with self._transaction() as db:  # another process may have rewritten it meanwhile
            if _source_is_keyed(db):
                return
            db.execute(_DOCUMENTS.format(name="documents_by_origin"))
            db.execute("INSERT INTO documents_by_origin SELECT * FROM documents")
            db.execute("DROP TABLE documents")  # and its index on source, which the key covers
            db.execute("ALTER TABLE documents_by_origin RENAME TO documents")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def documents(self, source: str) -> dict[str, DocumentRecord]:
        """One source's documents by doc_id."""
        rows = self._db.execute("SELECT * FROM documents WHERE source = ?", (source,))
        return {row[0]: DocumentRecord(*row) for row in rows}

    def all_documents(self) -> list[DocumentRecord]:
        """Every source's documents; a file two sources list is there twice."""
        return [DocumentRecord(*row) for row in self._db.execute("SELECT * FROM documents")]

    def put_many(self, records: Sequence[DocumentRecord]) -> None:
        """All rows in one transaction."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.doc_id,
                        r.source,
                        r.fingerprint,
                        r.content_hash,
                        r.config_fingerprint,
                        r.doc_version,
                        r.chunks,
                        r.status,
                        r.attempts,
                        r.last_error,
                        r.updated_at or now,
                    )
                    for r in records
                ],
            )

    def update_fingerprints(self, source: str, fingerprints: Sequence[tuple[str, str]]) -> None:
        """A source's documents touched but not changed: remember their new (doc_id,
        fingerprint), nothing else, in one transaction. Lost in a crash, they only cost the next
        run a re-hash."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "UPDATE documents SET fingerprint = ?, updated_at = ?"
                " WHERE source = ? AND doc_id = ?",
                [(fingerprint, now, source, doc_id) for doc_id, fingerprint in fingerprints],
            )

    def remove(self, source: str, doc_ids: Sequence[str]) -> None:
        """A source's rows of these documents; another source's rows of them stay."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM documents WHERE source = ? AND doc_id = ?",
                [(source, d) for d in doc_ids],
            )

    def release_quarantine(self, source: str | None = None) -> list[str]:
        """Failed and quarantined documents get a fresh set of attempts on the next run."""
        where = "status != 'indexed'" + (" AND source = ?" if source is not None else "")
        args = (source,) if source is not None else ()
        with self._transaction() as db:
            ids = [r[0] for r in db.execute(f"SELECT doc_id FROM documents WHERE {where}", args)]
            db.execute(
                f"UPDATE documents SET attempts = 0, fingerprint = '', status = 'failed' "
                f"WHERE {where}",
                args,
            )
        return ids

    def start_run(self, source: str, external_id: str | None = None) -> int:
        """Called under the index's run lock: a run still marked running was interrupted."""
        with self._transaction() as db:
            db.execute("UPDATE run_outcomes SET state = 'interrupted' WHERE state = 'running'")
            cursor = db.execute(
                "INSERT INTO runs (source, started_at) VALUES (?, ?)", (source, time.time())
            )
            run_id = int(cursor.lastrowid or 0)
            db.execute(
                "INSERT INTO run_outcomes (run_id, state, pid, external_id) VALUES (?, ?, ?, ?)",
                (run_id, "running", os.getpid(), external_id),
            )
        return run_id

    def finish_run(
        self, run_id: int, report: dict[str, Any], state: RunState, error: str = ""
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, report = ? WHERE run_id = ?",
                (time.time(), json.dumps(report), run_id),
            )
            db.execute(
                "UPDATE run_outcomes SET state = ?, error = ? WHERE run_id = ?",
                (state, error, run_id),
            )

    def runs(self, limit: int = 20, source: str | None = None) -> list[RunRecord]:
        """Newest first. A run whose process is gone shows as interrupted."""
        where = " WHERE r.source = ?" if source is not None else ""
        rows = self._db.execute(
            "SELECT r.run_id, r.source, r.started_at, r.finished_at, r.dry_run, r.report,"
            " o.state, o.error, o.external_id, o.pid"
            f" FROM runs r LEFT JOIN run_outcomes o USING (run_id){where}"
            " ORDER BY r.run_id DESC LIMIT ?",
            (*((source,) if source is not None else ()), limit),
        )
        return [_run_record(*row) for row in rows]

    def record_version(
        self,
        collection: str,
        state: VersionState,
        scores: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        """Sets a collection version's state; scores and note are kept unless given."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO versions (collection, state, scores, note, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection) DO UPDATE SET"
                " state = excluded.state, updated_at = excluded.updated_at,"
                " scores = CASE WHEN ? THEN excluded.scores ELSE scores END,"
                " note = CASE WHEN ? THEN excluded.note ELSE note END",
                (
                    collection,
                    state,
                    json.dumps(scores or {}),
                    note or "",
                    time.time(),
                    scores is not None,
                    note is not None,
                ),
            )

    def versions(self) -> dict[str, VersionRecord]:
        rows = self._db.execute("SELECT * FROM versions")
        return {r[0]: VersionRecord(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows}


def _source_is_keyed(db: sqlite3.Connection) -> bool:
    """Whether `documents` is keyed by (source, doc_id) rather than by doc_id alone."""
    keyed = db.execute("SELECT pk FROM pragma_table_info('documents') WHERE name = 'source'")
    return bool(keyed.fetchone()[0])


def _run_record(
    run_id: int,
    source: str,
    started_at: float,
    finished_at: float | None,
    dry_run: int,
    report: str | None,
    state: RunState | None,
    error: str | None,
    external_id: str | None,
    pid: int | None,
) -> RunRecord:
    if state is None:  # recorded before runs had outcomes
        state = "completed" if finished_at is not None else "interrupted"
    elif state == "running" and not _process_alive(pid):
        state = "interrupted"
    return RunRecord(
        run_id,
        source,
        started_at,
        finished_at,
        bool(dry_run),
        json.loads(report) if report else None,
        state,
        error or "",
        external_id,
    )


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class IngestAlreadyRunning(Exception):
    """Another process holds the index's run lock."""


class RunLock:
    """One ingest run per index at a time, across processes on this machine.

    An OS file lock (flock): a run killed with SIGKILL releases it with its process, so a crash
    never leaves the index locked.
    """

    def __init__(
        self, path: Path, index: str, wait_s: float = 0.0, activity: str | None = None
    ) -> None:
        """`activity`: what the lock guards, for the message ("re-embed of"); by default
        ingest runs and version switches."""
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        self.index = index
        self.activity = activity
        self._lock = FileLock(path, timeout=wait_s)

    def __enter__(self) -> RunLock:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout as error:
            if self.activity:
                raise IngestAlreadyRunning(
                    f"another {self.activity} index '{self.index}' is in progress"
                ) from error
            raise IngestAlreadyRunning(
                f"another ingest run into index '{self.index}' is in progress "
                "(or a re-embed or rollback switching its version); wait for it to finish "
                "(runs that write one index never overlap)"
            ) from error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
