"""One way to open a state database: a SQLite file, or a namespace of a PostgreSQL database.

Statements are written once, in the SQL both engines speak (`ON CONFLICT … DO UPDATE`,
`RETURNING`), through SQLAlchemy's connections. On PostgreSQL each namespace is a schema
(`sluice_<index>` for an index's manifest, `sluice` for what every index shares), found through
the connection's `search_path`, so the same statements and migrations serve both engines.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

Tree = Literal["index", "shared"]
"""Which set of tables (and migrations): an index's manifest, or what all indexes share."""

SHARED_NAMESPACE = "sluice"


def namespace_for(index: str | None) -> str:
    """The PostgreSQL schema of an index's manifest (or the shared one): `sluice_<index>`, with
    a digest where the name has characters a bare schema name cannot."""
    if index is None:
        return SHARED_NAMESPACE
    safe = re.sub(r"[^a-z0-9_]", "_", index.lower())
    if safe != index:
        safe += "_" + hashlib.sha256(index.encode()).hexdigest()[:8]
    return f"sluice_{safe}"


class StateDatabase:
    """An engine and the tree of tables it holds. Write with `transaction()` (on SQLite
    `BEGIN IMMEDIATE`: writers queue for the file at the start, never fail midway); read with
    `reading()`."""

    def __init__(self, engine: Engine, tree: Tree, namespace: str | None, shared: bool) -> None:
        self.engine = engine
        self.tree = tree
        self.namespace = namespace
        """The PostgreSQL schema; None on SQLite."""
        self._shared_engine = shared

    @classmethod
    def sqlite(
        cls, path: Path, tree: Tree, durable: bool = True, busy_s: float = 30.0
    ) -> StateDatabase:
        """`durable=False`: no fsync per commit, for state a crash may lose (rate buckets).
        `busy_s`: how long a writer waits for the file, which a stopped process may hold."""
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{path}", connect_args={"timeout": busy_s, "check_same_thread": False}
        )
        synchronous = "FULL" if durable else "OFF"

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: object) -> None:
            dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
            _write_ahead_log(dbapi_connection)
            dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            writing = connection.get_execution_options().get("sluice_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

        return cls(engine, tree, None, shared=False)

    @classmethod
    def postgres(cls, url: str, tree: Tree, index: str | None = None) -> StateDatabase:
        namespace = namespace_for(index if tree == "index" else None)
        return cls(_postgres_engine(url, namespace), tree, namespace, shared=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def where(self) -> str:
        """For messages: the file, or the database and schema (never the password)."""
        url = self.engine.url
        if self.dialect == "sqlite":
            return str(url.database)
        return f"{url.render_as_string(hide_password=True)} (schema {self.namespace})"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.execution_options(sluice_write=True).begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    def close(self) -> None:
        """A SQLite file's connections close; a PostgreSQL pool stays for the process's other
        users of that database."""
        if not self._shared_engine:
            self.engine.dispose()


def _write_ahead_log(connection: sqlite3.Connection) -> None:
    """WAL, so readers never wait for the writer. Switching a new file to it takes the file
    for a moment and is not retried by SQLite's busy timeout: processes (or threads) opening a
    new file at once retry here."""
    deadline = time.monotonic() + 30
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


_engines: dict[tuple[str, str], Engine] = {}
_engines_lock = threading.Lock()


STATE_WAIT_S = 5
"""How long a request's write to the shared state (a rate bucket) waits for a lock that another
process holds before the request is answered 503."""

IDLE_IN_TRANSACTION_S = 30
"""The server ends a session idle this long inside a transaction: a stopped process (SIGSTOP,
Ctrl-Z) then holds no row lock longer. Session advisory locks (the run lock) are held outside
transactions, so a stopped ingest keeps its lock, as a stopped one should."""


def _postgres_engine(url: str, namespace: str) -> Engine:
    """One pool per database and schema in a process; `postgresql://` means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    key = (parsed.render_as_string(hide_password=False), namespace)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = create_engine(
                parsed,
                pool_pre_ping=True,
                pool_size=4,
                max_overflow=8,
                connect_args={
                    "options": f"-c search_path={namespace} -c idle_in_transaction_session_timeout"
                    f"={IDLE_IN_TRANSACTION_S}s",
                    "connect_timeout": 10,
                },
            )
        return _engines[key]


def open_state(
    url: str | None,
    sqlite_path: Path,
    tree: Tree,
    index: str | None = None,
    durable: bool = True,
    busy_s: float = 30.0,
) -> StateDatabase:
    """The state database of `tree`: in PostgreSQL at `url` when one is set, else the SQLite
    file at `sqlite_path`."""
    if url:
        return StateDatabase.postgres(url, tree, index)
    return StateDatabase.sqlite(sqlite_path, tree, durable, busy_s)
