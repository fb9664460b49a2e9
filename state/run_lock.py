"""One ingest run (or version switch, or re-embed) per index at a time, across processes.

On one machine an OS file lock (flock); with state in PostgreSQL a session advisory lock, so
workers on any machine exclude each other. Either is held by something the OS or the server
frees when its holder dies: a run killed with SIGKILL never leaves the index locked.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, text

from state.database import StateDatabase


class IngestAlreadyRunning(Exception):
    """Another process holds the index's run lock."""


class _Mutex(Protocol):
    def acquire(self, wait_s: float) -> bool: ...
    def release(self) -> None: ...


class _FileMutex:
    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(path)

    def acquire(self, wait_s: float) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=wait_s)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


class _AdvisoryMutex:
    """`pg_try_advisory_lock` on a connection of its own, held until released or closed."""

    def __init__(self, db: StateDatabase, name: str) -> None:
        self._db = db
        digest = hashlib.sha256(f"{db.namespace}:{name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._connection: Connection | None = None

    def acquire(self, wait_s: float) -> bool:
        connection = self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + wait_s
        while True:
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar()
            if taken:
                self._connection = connection
                return True
            if time.monotonic() >= deadline:
                connection.close()
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        finally:
            self._connection.close()
            self._connection = None


class RunLock:
    """>>> with RunLock.on_file(Path("docs.lock"), "docs"): ...  # doctest: +SKIP"""

    def __init__(
        self, mutex: _Mutex, index: str, wait_s: float = 0.0, activity: str | None = None
    ) -> None:
        """`activity`: what the lock guards, for the message ("re-embed of"); by default
        ingest runs and version switches."""
        self._mutex = mutex
        self.index = index
        self.wait_s = wait_s
        self.activity = activity

    @classmethod
    def on_file(
        cls, path: Path, index: str, wait_s: float = 0.0, activity: str | None = None
    ) -> RunLock:
        return cls(_FileMutex(path), index, wait_s, activity)

    @classmethod
    def in_database(
        cls,
        db: StateDatabase,
        name: str,
        index: str,
        wait_s: float = 0.0,
        activity: str | None = None,
    ) -> RunLock:
        """`name`: which of the index's locks ("run", "reembed")."""
        return cls(_AdvisoryMutex(db, name), index, wait_s, activity)

    def __enter__(self) -> RunLock:
        if self._mutex.acquire(self.wait_s):
            return self
        if self.activity:
            raise IngestAlreadyRunning(
                f"another {self.activity} index '{self.index}' is in progress"
            )
        raise IngestAlreadyRunning(
            f"another ingest run into index '{self.index}' is in progress "
            "(or a re-embed or rollback switching its version); wait for it to finish "
            "(runs that write one index never overlap)"
        )

    def __exit__(self, *exc_info: object) -> None:
        self._mutex.release()
