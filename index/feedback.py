"""What users said about answers (`POST /feedback`): Parquet files beside the query log, one
row per item, joinable to it on `request_id`; and the event ids already taken, in the state
database, so that a client's retry of one event is stored once whichever API process gets it.
"""

from __future__ import annotations

import time

import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from state.database import StateDatabase
from state.schema import ensure_schema

FEEDBACK_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("event_id", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("key_id", pa.string()),
        pa.field("tenants", pa.list_(pa.string()), metadata={"doc": "null: every tenant"}),
        ("index", pa.string()),
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        pa.field("label", pa.string(), metadata={"doc": "clicked, relevant or not_relevant"}),
        pa.field("rank", pa.int32(), metadata={"doc": "where the client showed it, from 1"}),
        pa.field("answer_rank", pa.int32(), metadata={"doc": "its place in the answer, from 1"}),
        ("dwell_ms", pa.int64()),
    ]
)


class FeedbackEvents:
    """Event ids taken, per key: shared by every API process on the state database."""

    def __init__(self, db: StateDatabase) -> None:
        ensure_schema(db)
        self._db = db

    def take(self, key_id: str | None, event_id: str, request_id: str, items: int) -> bool:
        """True the first time a key sends `event_id`; False for any repeat."""
        try:
            with self._db.transaction() as db:
                db.execute(
                    text(
                        "INSERT INTO feedback_events (key_id, event_id, request_id, time, items)"
                        " VALUES (:key_id, :event_id, :request_id, :time, :items)"
                    ),
                    {
                        "key_id": key_id or "",
                        "event_id": event_id,
                        "request_id": request_id,
                        "time": time.time(),
                        "items": items,
                    },
                )
        except IntegrityError:
            return False
        return True

    def close(self) -> None:
        self._db.close()
