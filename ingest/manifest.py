"""The per-index manifest: what each source document was when last seen, and the run history.

A SQLite file per index, or a schema per index in PostgreSQL (`state/`). Each write is its own
transaction, and a document's row changes only after its points are in the index, so a crash
leaves a row that is behind, never ahead: the next run redoes that document's work, and
deterministic point ids make the redo write the same points.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the database layer loads with the first Manifest, not with these records
    from sqlalchemy import TextClause

    from state.database import StateDatabase

DocumentStatus = Literal["pending", "indexed", "failed", "quarantined"]
"""`pending`: its points are being written; a run that finds it so redoes the document."""

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
    partition: int | None = None
    """Of a partition's run: which part of its source's listing it synced."""


@dataclass(frozen=True)
class VersionRecord:
    collection: str
    state: VersionState
    scores: dict[str, Any]
    note: str
    updated_at: float


class Manifest:
    """>>> manifest = Manifest(Path(".sluice/manifests/docs.sqlite"))  # doctest: +SKIP"""

    def __init__(self, state: Path | StateDatabase) -> None:
        """`state`: the index's SQLite file, or its state database (`state/database.py`)."""
        from state.database import StateDatabase
        from state.schema import ensure_schema

        self.db = StateDatabase.sqlite(state, "index") if isinstance(state, Path) else state
        ensure_schema(self.db)

    def close(self) -> None:
        self.db.close()

    def documents(self, source: str) -> dict[str, DocumentRecord]:
        """One source's documents by doc_id."""
        with self.db.reading() as db:
            rows = db.execute(
                _sql(f"SELECT {_COLUMNS} FROM documents WHERE source = :source"),
                {"source": source},
            )
            return {row[0]: DocumentRecord(*row) for row in rows}

    def all_documents(self) -> list[DocumentRecord]:
        """Every source's documents; a file two sources list is there twice."""
        with self.db.reading() as db:
            return [
                DocumentRecord(*row)
                for row in db.execute(_sql(f"SELECT {_COLUMNS} FROM documents"))
            ]

    def put_many(self, records: Sequence[DocumentRecord]) -> None:
        """All rows in one transaction."""
        if not records:
            return
        now = time.time()
        with self.db.transaction() as db:
            db.execute(
                _sql(
                    f"INSERT INTO documents ({_COLUMNS}) VALUES ({_PLACEHOLDERS})"
                    f" ON CONFLICT (source, doc_id) DO UPDATE SET {_UPDATES}"
                ),
                [{**asdict(r), "updated_at": r.updated_at or now} for r in records],
            )

    def update_fingerprints(self, source: str, fingerprints: Sequence[tuple[str, str]]) -> None:
        """A source's documents touched but not changed: remember their new (doc_id,
        fingerprint), nothing else, in one transaction. Lost in a crash, they only cost the next
        run a re-hash."""
        if not fingerprints:
            return
        now = time.time()
        with self.db.transaction() as db:
            db.execute(
                _sql(
                    "UPDATE documents SET fingerprint = :fingerprint, updated_at = :now"
                    " WHERE source = :source AND doc_id = :doc_id"
                ),
                [
                    {"fingerprint": f, "now": now, "source": source, "doc_id": d}
                    for d, f in fingerprints
                ],
            )

    def remove(self, source: str, doc_ids: Sequence[str]) -> None:
        """A source's rows of these documents; another source's rows of them stay."""
        if not doc_ids:
            return
        with self.db.transaction() as db:
            db.execute(
                _sql("DELETE FROM documents WHERE source = :source AND doc_id = :doc_id"),
                [{"source": source, "doc_id": d} for d in doc_ids],
            )

    def release_quarantine(self, source: str | None = None) -> list[str]:
        """Failed and quarantined documents get a fresh set of attempts on the next run."""
        where = "status != 'indexed'" + (" AND source = :source" if source is not None else "")
        args = {"source": source} if source is not None else {}
        with self.db.transaction() as db:
            ids = [
                r[0] for r in db.execute(_sql(f"SELECT doc_id FROM documents WHERE {where}"), args)
            ]
            db.execute(
                _sql(
                    "UPDATE documents SET attempts = 0, fingerprint = '', status = 'failed' "
                    f"WHERE {where}"
                ),
                args,
            )
        return ids

    def start_run(
        self,
        source: str,
        external_id: str | None = None,
        parent_run_id: int | None = None,
        partition: int | None = None,
    ) -> int:
        """Called under the index's run lock: a run still marked running was interrupted. A
        partition's run (`parent_run_id`) is under its parent's lock, beside its siblings."""
        with self.db.transaction() as db:
            if parent_run_id is None:
                db.execute(
                    _sql("UPDATE run_outcomes SET state = 'interrupted' WHERE state = 'running'")
                )
            run_id = int(
                db.execute(
                    _sql(
                        "INSERT INTO runs (source, started_at) VALUES (:source, :now)"
                        " RETURNING run_id"
                    ),
                    {"source": source, "now": time.time()},
                ).scalar_one()
            )
            db.execute(
                _sql(
                    "INSERT INTO run_outcomes"
                    " (run_id, state, pid, host, external_id, parent_run_id, partition)"
                    " VALUES (:run_id, 'running', :pid, :host, :external_id, :parent, :partition)"
                ),
                {
                    "run_id": run_id,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "external_id": external_id,
                    "parent": parent_run_id,
                    "partition": partition,
                },
            )
        return run_id

    def finish_run(
        self, run_id: int, report: dict[str, Any], state: RunState, error: str = ""
    ) -> None:
        with self.db.transaction() as db:
            db.execute(
                _sql("UPDATE runs SET finished_at = :now, report = :report WHERE run_id = :run_id"),
                {"now": time.time(), "report": json.dumps(report), "run_id": run_id},
            )
            db.execute(
                _sql(
                    "UPDATE run_outcomes SET state = :state, error = :error WHERE run_id = :run_id"
                ),
                {"state": state, "error": error, "run_id": run_id},
            )

    def runs(self, limit: int = 20, source: str | None = None) -> list[RunRecord]:
        """Newest first, partitions summed into their parent's report and not listed. A run of
        this machine whose process is gone shows as interrupted."""
        where = " AND r.source = :source" if source is not None else ""
        return self._runs(f"o.parent_run_id IS NULL{where}", {"source": source, "limit": limit})

    def runs_from(self, first_run_id: int, limit: int = 10_000) -> list[RunRecord]:
        """Runs from `first_run_id` on, oldest first, partitions not listed: a reader that keeps
        totals reads each finished run once."""
        return self._runs(
            "o.parent_run_id IS NULL AND r.run_id >= :first",
            {"first": first_run_id, "limit": limit},
            order="ASC",
        )

    def partition_runs(self, parent_run_id: int) -> list[RunRecord]:
        """The runs of a partitioned run's parts, newest first (a retried part has several)."""
        return self._runs("o.parent_run_id = :parent", {"parent": parent_run_id, "limit": 100_000})

    def _runs(self, where: str, args: dict[str, Any], order: str = "DESC") -> list[RunRecord]:
        with self.db.reading() as db:
            rows = db.execute(
                _sql(
                    "SELECT r.run_id, r.source, r.started_at, r.finished_at, r.dry_run, r.report,"
                    " o.state, o.error, o.external_id, o.pid, o.host, o.partition"
                    f" FROM runs r LEFT JOIN run_outcomes o ON o.run_id = r.run_id WHERE {where}"
                    f" ORDER BY r.run_id {order} LIMIT :limit"
                ),
                args,
            ).all()
        return [_run_record(*row) for row in rows]

    def record_version(
        self,
        collection: str,
        state: VersionState,
        scores: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        """Sets a collection version's state; scores and note are kept unless given."""
        keep = {"scores": scores is None, "note": note is None}
        updates = ", ".join(
            f"{column} = excluded.{column}" for column, kept in keep.items() if not kept
        )
        with self.db.transaction() as db:
            db.execute(
                _sql(
                    "INSERT INTO versions (collection, state, scores, note, updated_at)"
                    " VALUES (:collection, :state, :scores, :note, :now)"
                    " ON CONFLICT (collection) DO UPDATE SET"
                    " state = excluded.state, updated_at = excluded.updated_at"
                    + (f", {updates}" if updates else "")
                ),
                {
                    "collection": collection,
                    "state": state,
                    "scores": json.dumps(scores or {}),
                    "note": note or "",
                    "now": time.time(),
                },
            )

    def versions(self) -> dict[str, VersionRecord]:
        with self.db.reading() as db:
            rows = db.execute(
                _sql("SELECT collection, state, scores, note, updated_at FROM versions")
            ).all()
        return {r[0]: VersionRecord(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows}


def _sql(statement: str) -> TextClause:
    """SQLAlchemy loaded on first use: parse workers import this module's records only."""
    from sqlalchemy import text

    return text(statement)


_FIELDS = (
    "doc_id", "source", "fingerprint", "content_hash", "config_fingerprint", "doc_version",
    "chunks", "status", "attempts", "last_error", "updated_at",
)  # fmt: skip
_COLUMNS = ", ".join(_FIELDS)
_PLACEHOLDERS = ", ".join(f":{f}" for f in _FIELDS)
_UPDATES = ", ".join(f"{f} = excluded.{f}" for f in _FIELDS if f not in ("doc_id", "source"))


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
    host: str | None,
    partition: int | None = None,
) -> RunRecord:
    if state is None:  # recorded before runs had outcomes
        state = "completed" if finished_at is not None else "interrupted"
    elif state == "running" and host in (None, socket.gethostname()) and not _process_alive(pid):
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
        partition,
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
