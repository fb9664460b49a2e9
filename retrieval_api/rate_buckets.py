"""Per-key rate limits that every API process on one data dir shares.

Two `sluice serve` processes behind one address must not each admit a key's full rate, so the
state of each key's bucket lives in a SQLite file of the data dir rather than in a process.
The algorithm is GCRA (the generic cell rate algorithm: a token bucket kept as one number, the
time the bucket is next full), which needs one row per key and one short write per request.
pyrate-limiter, which the limiter used while it lived in one process, keeps a token bucket only
in memory or Redis; its SQLite and PostgreSQL buckets keep a log instead (a row per request,
counted over a sliding window), one table per limit.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Decision:
    admitted: bool
    limit: int
    """The burst: requests a full bucket admits at once."""
    remaining: int
    """Requests admitted at once after this one."""
    retry_after_s: float
    """Refused: seconds until one request is admitted again; admitted: 0."""


def decide(tat: float, now: float, rate_per_s: float, burst: int) -> tuple[Decision, float]:
    """GCRA: the decision, and the bucket's new theoretical arrival time (`tat`: when the
    bucket would be full again had no request come since)."""
    interval = 1.0 / rate_per_s
    tolerance = (burst - 1) * interval
    start = max(tat, now)
    if start - now > tolerance + 1e-9:
        return Decision(False, burst, 0, start - now - tolerance), tat
    new_tat = start + interval
    remaining = max(0, math.floor((tolerance - (new_tat - now)) / interval + 1e-9) + 1)
    return Decision(True, burst, remaining, 0.0), new_tat


class SqliteRateBuckets:
    """The buckets of every key in one SQLite file; each decision is one write transaction,
    so processes sharing the file admit a key's rate once between them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A bucket lost in a crash only forgets recent requests: no fsync per request.
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tat REAL)")
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_s: float, burst: int, now: float | None = None) -> Decision:
        """One request of `key` against its bucket (`rate_per_s` sustained, `burst` at once)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT tat FROM buckets WHERE key = ?", (key,)).fetchone()
                at = time.time() if now is None else now
                decision, tat = decide(row[0] if row else at, at, rate_per_s, burst)
                if decision.admitted:
                    self._db.execute(
                        "INSERT INTO buckets (key, tat) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                        (key, tat),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return decision

    def close(self) -> None:
        self._db.close()
