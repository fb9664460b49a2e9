"""Per-key rate limits that every API process on one data dir shares.

Two `sluice serve` processes behind one address must not each admit a key's full rate, so the
state of each key's bucket lives in the state database (a SQLite file of the data dir, or
PostgreSQL) rather than in a process.
The algorithm is GCRA (the generic cell rate algorithm: a token bucket kept as one number, the
time the bucket is next full), which needs one row per key and one short write per request.
pyrate-limiter, which the limiter used while it lived in one process, keeps a token bucket only
in memory or Redis; its SQLite and PostgreSQL buckets keep a log instead (a row per request,
counted over a sliding window), one table per limit.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sqlalchemy import text

from state.database import STATE_WAIT_S, StateDatabase
from state.schema import ensure_schema


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


class RateBuckets:
    """The buckets of every key in one state database (`state/`); each decision is one write
    transaction, so processes sharing it (a data dir's SQLite file, or PostgreSQL for replicas
    on many machines) admit a key's rate once between them."""

    def __init__(self, db: StateDatabase) -> None:
        self._db = db
        ensure_schema(db)
        # The bucket's row is locked until the decision is written: on SQLite the whole file is
        # (BEGIN IMMEDIATE), on PostgreSQL that row (FOR UPDATE, after making it if new).
        self._read = "SELECT tat FROM rate_buckets WHERE key = :key"
        if db.dialect == "postgresql":
            self._read += " FOR UPDATE"
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_s: float, burst: int, now: float | None = None) -> Decision:
        """One request of `key` against its bucket (`rate_per_s` sustained, `burst` at once)."""
        with self._lock, self._db.transaction() as db:
            if self._db.dialect == "postgresql":  # a stopped replica's row lock: 503, not a hang
                db.execute(text(f"SET LOCAL lock_timeout = '{STATE_WAIT_S}s'"))
            at = time.time() if now is None else now
            db.execute(
                text(
                    "INSERT INTO rate_buckets (key, tat) VALUES (:key, :at) ON CONFLICT DO NOTHING"
                ),
                {"key": key, "at": at},
            )
            tat = db.execute(text(self._read), {"key": key}).scalar_one()
            decision, new_tat = decide(tat, at, rate_per_s, burst)
            if decision.admitted:
                db.execute(
                    text("UPDATE rate_buckets SET tat = :tat WHERE key = :key"),
                    {"key": key, "tat": new_tat},
                )
            return decision

    def close(self) -> None:
        self._db.close()
