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
from config.settings import Settings
from config.sources import LocalFolderConfig, PostgresConfig, S3Config, SourceConfig
from index.contracts import Embedder
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
    kept: KeptSource | None = None,
) -> int:
    """Reconcile the source, then sync each batch of its changes (a folder's file events, an S3
    bucket's event queue, a PostgreSQL channel) until `stop` is set; returns the syncs run.
    `kept`: the source as another part of this process keeps it open (the sync webhook's
    runs), else one of its own, closed on return."""
    own = kept is None
    source = kept or KeptSource(parts, config)

    def sync(scope: Scope | None, seen_at: float | None) -> IngestReport | None:
        try:
            report = source.sync(scope, seen_at=seen_at)
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
        if own:
            source.close()


class KeptSource:
    """A source's sync machinery kept open in a long-lived process: the store, the manifest,
    the embedder and the reading workers stay between syncs, so a sync of a few changed
    documents costs their reading and embedding, not a process start and a model load. One
    sync at a time (a lock), each under the index's run lock."""

    def __init__(self, parts: Components, config: SourceConfig) -> None:
        self.config = config
        self._parts = parts
        self._source = parts.source(config)
        self._base = replace(
            parts.sync_options(), tenant=config.tenant, cost_rates=parts.cost_rates()
        )
        self._pool = ReadPool(self._base.parse_workers, self._base.read_budget)
        self._store = parts.store()
        self._manifest = parts.manifest()
        self._embedder: Embedder | None = None
        self._one_at_a_time = threading.Lock()

    def sync(
        self,
        scope: Scope | None,
        seen_at: float | None = None,
        external_id: str | None = None,
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> IngestReport:
        """Raises IngestAlreadyRunning when the run lock stays held for `lock_wait_s`."""
        with self._one_at_a_time, self._parts.run_lock(lock_wait_s):
            options = replace(
                self._base,
                scope=scope,
                seen_at=seen_at,
                read_pool=self._pool,
                external_id=external_id,
            )
            try:
                return sync_source(
                    self._source, self.config.name, self._ingest_parts(), self._manifest, options
                )
            finally:
                # A collection this sync made goes to the data dir's owner (the embedded
                # engine's `SharedEdgeStore`): between syncs nobody depends on this process.
                release = getattr(self._store, "release_collections", None)
                if release is not None:
                    release()

    def _ingest_parts(self) -> IngestParts:
        """The embedder of the collection the index serves, loaded once: a re-embed that
        changes the model gets a new one, every other sync the same."""
        wanted = self._parts.index_embedder(self._store)  # nothing loads until it embeds
        if self._embedder is None or self._embedder.cache_key != wanted.cache_key:
            self._embedder = wanted
        return self._parts.ingest_parts(self._store, self._embedder)

    def close(self) -> None:
        with self._one_at_a_time:
            self._pool.close()
            self._manifest.close()
            self._store.close()


class KeptSources:
    """Each configured source kept open at most once in this process, when first asked for, and
    shared by its watcher and the sync webhook's runs (`sluice deploy`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._open: dict[str, KeptSource] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> KeptSource:
        with self._lock:
            if name not in self._open:
                config = self._settings.source(name)
                self._open[name] = KeptSource(Components(self._settings), config)
            return self._open[name]

    def close(self) -> None:
        with self._lock:
            for source in self._open.values():
                source.close()
            self._open.clear()
