"""The query log: one record per `/retrieve` call, in Parquet files under the data dir.

Calls append to a buffer; a background thread writes it out as one complete file every
`flush_rows` records or `flush_s` seconds (a file is written aside and renamed, so a reader never
sees half of one), files of a past day are merged into one, and the oldest files go when the log
outgrows its bound. Files sit in `date=YYYY-MM-DD/` folders, which pyarrow and DuckDB read as a
`date` column:

    duckdb.sql("select * from read_parquet('query-log/**/*.parquet', hive_partitioning=true)")

With query text off, a record keeps only a keyed hash of the query (HMAC-SHA256 under a secret
of the data dir): equal queries still group together, and a guessed query cannot be confirmed
without that secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock
from sqlalchemy.exc import SQLAlchemyError

from index.contracts import Condition, MatchAny, PayloadFilter, Range
from index.query_log_index import QueryLogIndex

logger = logging.getLogger("sluice.query_log")

_scores = pa.list_(pa.float32())
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("key_id", pa.string()),
        pa.field("tenants", pa.list_(pa.string()), metadata={"doc": "null: every tenant"}),
        ("index", pa.string()),
        ("collection", pa.string()),
        ("embedding_model", pa.string()),
        ("reranker_model", pa.string()),
        ("mode", pa.string()),
        ("top_k", pa.int32()),
        ("rerank", pa.bool_()),
        ("filters", pa.string()),
        pa.field(
            "payload_filter",
            pa.string(),
            metadata={"doc": "the request's filter as the engine ran it (tenants aside): replay"},
        ),
        ("query", pa.string()),
        ("query_hash", pa.string()),
        ("query_tokens", pa.int32()),
        ("chunk_ids", pa.list_(pa.string())),
        ("doc_ids", pa.list_(pa.string())),
        ("scores", _scores),
        ("dense_scores", _scores),
        ("bm25_scores", _scores),
        ("fused_scores", _scores),
        ("rerank_scores", _scores),
        ("latency_ms", pa.float32()),
        ("embed_ms", pa.float32()),
        ("bm25_encode_ms", pa.float32()),
        ("search_ms", pa.float32()),
        ("fusion_ms", pa.float32()),
        ("rerank_ms", pa.float32()),
        ("cpu_ms", pa.float32()),
        ("cost_estimate", pa.float64()),
        ("cache", pa.string()),
        ("degraded", pa.list_(pa.string())),
        ("dense_bm25_agreement", pa.float32()),
        ("top_margin", pa.float32()),
        pa.field(
            "explored_swap",
            pa.int32(),
            metadata={"doc": "k: hits k and k+1 traded places (feedback exploration); null: none"},
        ),
    ]
)
COLUMNS = frozenset(SCHEMA.names)


class QueryLog:
    """Thread-safe; `close()` writes what is buffered. With an `index`, each answer also gets a
    row in the state database (`index/query_log_index.py`) that follows its file."""

    def __init__(
        self,
        directory: Path,
        keep_text: bool = True,
        max_bytes: int = 512 * 2**20,
        flush_rows: int = 1000,
        flush_s: float = 30.0,
        index: QueryLogIndex | None = None,
        schema: pa.Schema = SCHEMA,
        name: str = "query log",
    ) -> None:
        """`schema` and `name`: another log kept the same way (the feedback log)."""
        self.schema, self.name = schema, name
        self._columns = frozenset(schema.names)
        self.directory = directory
        self.keep_text = keep_text
        self.max_bytes = max_bytes
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.index = index
        self.directory.mkdir(parents=True, exist_ok=True)
        self._secret = _secret(directory / ".hash-key")
        self._rows: list[dict[str, Any]] = []
        self._writing: dict[int, list[dict[str, Any]]] = {}
        """Batches taken from the buffer and not yet indexed: still `pending`."""
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="query-log", daemon=True)
        self._thread.start()

    def query_fields(self, query: str) -> dict[str, str | None]:
        digest = hmac.new(self._secret, query.encode(), hashlib.sha256).hexdigest()[:32]
        return {"query": query if self.keep_text else None, "query_hash": digest}

    def record(self, row: dict[str, Any]) -> None:
        """`row`: columns of the schema (others are an error; missing ones are null)."""
        if unknown := row.keys() - self._columns:
            raise ValueError(f"not {self.name} columns: {sorted(unknown)}")
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def pending(self, request_id: str) -> list[dict[str, Any]]:
        """The records of `request_id` not written out yet, newest first: what this process
        answered in the last `flush_s`, before its index rows exist."""
        with self._lock:
            rows = [*(r for batch in self._writing.values() for r in batch), *self._rows]
        return [row for row in reversed(rows) if row.get("request_id") == request_id]

    def flush(self) -> None:
        """Writes what is buffered now (the background thread does it on its own)."""
        with self._lock:
            rows, self._rows = self._rows, []
            if rows:
                self._writing[id(rows)] = rows
        if not rows:
            return
        with self._write_lock:
            try:
                path = self._write(rows)
            except OSError as error:  # a full disk loses log records, never an answer
                self._done_with(rows)
                logger.error("query log: %d records not written: %s", len(rows), error)
                return
            self._indexing(QueryLogIndex.add, rows, path)
            self._done_with(rows)  # found by the index from now on
            try:
                self._compact_past_days()
                self._bound()
            except OSError as error:
                logger.error("query log: not compacted or bounded: %s", error)

    def _done_with(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._writing.pop(id(rows), None)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        if self.index is not None:
            self.index.close()

    def files(self) -> list[Path]:
        return log_files(self.directory)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def _indexing(self, change: Callable[..., None], *args: Any) -> None:
        """A state database that is down loses index rows, never log records or answers."""
        if self.index is None:
            return
        try:
            change(self.index, *args)
        except SQLAlchemyError as error:
            logger.error("query log index: not updated: %s", error)

    def _write(self, rows: list[dict[str, Any]]) -> Path:
        table = pa.Table.from_pylist(rows, schema=self.schema)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        folder = self.directory / f"date={day}"
        folder.mkdir(exist_ok=True)
        path = folder / f"part-{time.time_ns()}-{os.getpid()}.parquet"
        _write_aside(table, path)
        return path

    def _compact_past_days(self) -> None:
        """One file per past day: many small files slow every reader down."""
        today = f"date={datetime.now(UTC):%Y-%m-%d}"
        for folder in sorted(self.directory.glob("date=*")):
            parts = sorted(folder.glob("part-*.parquet"))
            if folder.name == today or len(parts) < 2:
                continue
            with FileLock(self.directory / ".compact.lock"):
                parts = sorted(folder.glob("part-*.parquet"))  # another process may have done it
                if len(parts) < 2:
                    continue
                merged = pa.concat_tables(pq.read_table(p, schema=self.schema) for p in parts)
                day_file = folder / f"part-{time.time_ns()}-{os.getpid()}-day.parquet"
                _write_aside(merged, day_file)
                self._indexing(QueryLogIndex.moved, parts, day_file)
                for part in parts:
                    part.unlink(missing_ok=True)

    def _bound(self) -> None:
        files = self.files()
        sizes = [f.stat().st_size for f in files]
        total = sum(sizes)
        for path, size in zip(files[:-1], sizes[:-1], strict=True):  # the newest stays
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            self._indexing(QueryLogIndex.dropped, path)
            total -= size
        for folder in self.directory.glob("date=*"):
            if not any(folder.iterdir()):
                folder.rmdir()


def _write_aside(table: pa.Table, path: Path) -> None:
    aside = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, aside, compression="zstd")
    os.replace(aside, path)


def _secret(path: Path) -> bytes:
    """The data dir's hashing key, made on first use, readable by its owner only; linked into
    place whole, so two processes starting at once agree on one key."""
    if not path.exists():
        aside = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    return path.read_bytes()


def log_files(directory: Path) -> list[Path]:
    """A query log's files, oldest first (names sort by time)."""
    return sorted(directory.glob("date=*/*.parquet"), key=lambda p: (p.parent.name, p.name))


def filter_to_json(payload_filter: PayloadFilter) -> str | None:
    if not payload_filter:
        return None
    return json.dumps(
        {
            part: [{"kind": type(c).__name__, **asdict(c)} for c in conditions]
            for part, conditions in (
                ("must", payload_filter.must),
                ("must_not", payload_filter.must_not),
            )
        }
    )


def filter_from_json(text: str | None) -> PayloadFilter | None:
    if not text:
        return None
    kinds = {"MatchAny": MatchAny, "Range": Range}
    data = json.loads(text)

    def conditions(part: str) -> tuple[Condition, ...]:
        return tuple(
            kinds[c.pop("kind")](**c)
            for c in data.get(part, [])  # type: ignore[arg-type]
        )

    return PayloadFilter(must=conditions("must"), must_not=conditions("must_not"))


def newest_first(path: Path, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The records of a query log folder (or one of its files), newest first, one file read at
    a time and only `columns` of it: a reader that stops early reads little of a large log."""
    for file in [path] if path.is_file() else reversed(log_files(path)):
        table = pq.read_table(file, columns=list(columns), schema=SCHEMA)
        yield from reversed(table.to_pylist())


def read_query_log(path: Path, schema: pa.Schema = SCHEMA) -> pa.Table:
    """Every record of a query log folder (or one of its files), oldest first; `schema`: the
    log's (the feedback log is written the same way)."""
    if path.is_file():
        return pq.read_table(path, schema=schema)
    files = log_files(path)
    if not files:
        return schema.empty_table()
    table = pa.concat_tables(pq.read_table(p, schema=schema) for p in files)
    return table.sort_by("time")
