"""A PostgreSQL source's row changes as they happen: LISTEN on its `notify_channel`, whose
payloads a trigger fills with changed rows' ids (docs/live.md has one), as batches of uris.

A notification is lost while no one listens (PostgreSQL keeps none): the caller reconciles by
listing on start and every so often, as for every live source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from config.sources import PostgresConfig
from ingest.sources.folder_events import IDLE_S, ChangeBatch
from ingest.sources.postgres import PostgresSource

GATHER_S = 0.05
"""After a first notification, how long more are gathered into the same batch."""


def postgres_events(config: PostgresConfig, stop: threading.Event) -> Iterator[ChangeBatch]:
    import psycopg
    from psycopg import sql

    if config.notify_channel is None:
        raise ValueError(f"source '{config.name}' has no notify_channel to listen on")
    source = PostgresSource(config)
    with psycopg.connect(config.url.get_secret_value(), autocommit=True) as connection:
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(config.notify_channel)))
        while not stop.is_set():
            first = list(connection.notifies(timeout=IDLE_S, stop_after=1))
            seen_at = time.time()
            more = list(connection.notifies(timeout=GATHER_S)) if first else []
            uris = frozenset(source.uri(n.payload) for n in first + more if n.payload)
            yield ChangeBatch(frozenset(), seen_at, uris)
