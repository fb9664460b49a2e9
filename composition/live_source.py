"""A source kept live: a local folder's file events, an S3 bucket's event queue or a PostgreSQL
channel's notifications drive scoped syncs (`pipelines/live_sync.py`) in this process until it
is told to stop.

The store, the manifest, the models and the reading workers stay open between batches (a model
or a parser loads once, not per change); each batch takes the index's run lock for its sync
alone, so scheduled runs, re-embeds and the watcher take turns, and each batch is a run in the
index's history. A batch that finds the lock held waits for it (`LOCK_WAIT_S`), then is tried
again with the next batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from composition.components import Components
from config.sources import LocalFolderConfig, PostgresConfig, S3Config
from index.contracts import Embedder, VectorStore
from ingest.sources.folder_events import folder_events
from ingest.sources.postgres_events import postgres_events
from ingest.sources.s3_events import s3_events
from ingest.types import Scope
from pipelines.document_stream import ReadPool
from pipelines.ingest_sync import IngestParts, sync_source
from pipelines.live_sync import LiveOptions, run_live
from pipelines.report import IngestReport
from state.run_lock import IngestAlreadyRunning

log = logging.getLogger("sluice.live")

LOCK_WAIT_S = 60.0


def watch_source(
    parts: Components,
    config: LocalFolderConfig | S3Config | PostgresConfig,
    stop: threading.Event,
    on_report: Callable[[IngestReport], None] = lambda report: None,
    options: LiveOptions | None = None,
) -> int:
    """Reconcile the source, then sync each batch of its changes (a folder's file events, an S3
    bucket's event queue, a PostgreSQL channel) until `stop` is set; returns the syncs run."""
    source = parts.source(config)
    base = replace(parts.sync_options(), tenant=config.tenant, cost_rates=parts.cost_rates())
    pool = ReadPool(base.parse_workers, base.read_budget)
    store = parts.store()
    manifest = parts.manifest()
    embedders = _Embedders(parts, store)

    def sync(scope: Scope | None, seen_at: float | None) -> IngestReport | None:
        try:
            with parts.run_lock(LOCK_WAIT_S):
                report = sync_source(
                    source,
                    config.name,
                    embedders.ingest_parts(),
                    manifest,
                    replace(base, scope=scope, seen_at=seen_at, read_pool=pool),
                )
        except IngestAlreadyRunning as busy:
            log.warning("%s: %s; these changes wait for the next batch", config.name, busy)
            return None
        on_report(report)
        return report

    try:
        if isinstance(config, S3Config):
            return run_live(sync, s3_events(config, stop), stop, options)
        if isinstance(config, PostgresConfig):
            return run_live(sync, postgres_events(config, stop), stop, options)
        return run_live(sync, folder_events(config.path.resolve(), stop), stop, options)
    finally:
        pool.close()
        manifest.close()
        store.close()


class _Embedders:
    """The embedder of the collection the index serves, loaded once: a re-embed that changes
    the model gets a new one, every other batch the same."""

    def __init__(self, parts: Components, store: VectorStore) -> None:
        self._parts = parts
        self._store = store
        self._loaded: Embedder | None = None

    def ingest_parts(self) -> IngestParts:
        wanted = self._parts.index_embedder(self._store)  # nothing loads until it embeds
        if self._loaded is None or self._loaded.cache_key != wanted.cache_key:
            self._loaded = wanted
        return self._parts.ingest_parts(self._store, self._loaded)
