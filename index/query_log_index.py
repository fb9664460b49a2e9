"""The query log's index in the state database: which answer went to whom, and where its whole
record lies.

The query log stays Parquet files beside each API process: columnar, cheap to append, read by
DuckDB or pyarrow. What another process must find (another replica, a worker, the CLI, on
another machine when the state is in PostgreSQL) is one row per answer: its request id, the key
and tenants that asked, the hits it gave, and the host and file that hold the rest. Rows follow
the files: added when a file is written, moved when a past day's files are merged into one,
dropped when a file is.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from state.database import StateDatabase
from state.schema import ensure_schema


@dataclass(frozen=True)
class LoggedAnswer:
    request_id: str
    time: float
    """Seconds since the epoch."""
    key_id: str | None
    tenants: tuple[str, ...] | None
    """None: every tenant."""
    index: str | None
    chunk_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]
    host: str
    file: str
    """The Parquet file on `host` that holds the whole record."""


class QueryLogIndex:
    def __init__(self, db: StateDatabase, host: str | None = None) -> None:
        ensure_schema(db)
        self._db = db
        self.host = host or socket.gethostname()

    def add(self, rows: Sequence[Mapping[str, Any]], file: Path) -> None:
        """`rows`: query log records (`index.query_log.SCHEMA`), all written to `file`."""
        if not rows:
            return
        with self._db.transaction() as db:
            db.execute(
                text(
                    "INSERT INTO query_log_requests (request_id, time, key_id, tenants,"
                    " index_name, chunk_ids, doc_ids, host, file) VALUES (:request_id, :time,"
                    " :key_id, :tenants, :index_name, :chunk_ids, :doc_ids, :host, :file)"
                ),
                [self._values(row, file) for row in rows],
            )

    def moved(self, files: Sequence[Path], to: Path) -> None:
        with self._db.transaction() as db:
            db.execute(
                text(
                    "UPDATE query_log_requests SET file = :to WHERE host = :host AND file = :file"
                ),
                [{"to": str(to), "host": self.host, "file": str(f)} for f in files],
            )

    def dropped(self, file: Path) -> None:
        with self._db.transaction() as db:
            db.execute(
                text("DELETE FROM query_log_requests WHERE host = :host AND file = :file"),
                {"host": self.host, "file": str(file)},
            )

    def answers(self, request_id: str) -> list[LoggedAnswer]:
        """Newest first: a request id a client chose may name several answers."""
        with self._db.reading() as db:
            rows = db.execute(
                text(
                    "SELECT request_id, time, key_id, tenants, index_name, chunk_ids, doc_ids,"
                    " host, file FROM query_log_requests WHERE request_id = :request_id"
                    " ORDER BY time DESC, id DESC"
                ),
                {"request_id": request_id},
            ).all()
        return [
            LoggedAnswer(
                request_id=row.request_id,
                time=row.time,
                key_id=row.key_id,
                tenants=None if row.tenants is None else tuple(json.loads(row.tenants)),
                index=row.index_name,
                chunk_ids=tuple(json.loads(row.chunk_ids)),
                doc_ids=tuple(json.loads(row.doc_ids)),
                host=row.host,
                file=row.file,
            )
            for row in rows
        ]

    def close(self) -> None:
        self._db.close()

    def _values(self, row: Mapping[str, Any], file: Path) -> dict[str, Any]:
        tenants = row.get("tenants")
        return {
            "request_id": row.get("request_id") or "",
            "time": row["time"].timestamp(),
            "key_id": row.get("key_id"),
            "tenants": None if tenants is None else json.dumps(list(tenants)),
            "index_name": row.get("index"),
            "chunk_ids": json.dumps(list(row.get("chunk_ids") or [])),
            "doc_ids": json.dumps(list(row.get("doc_ids") or [])),
            "host": self.host,
            "file": str(file),
        }
