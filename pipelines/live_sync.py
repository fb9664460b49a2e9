"""A live source: synced again for each batch of its changes, only where they are.

On start, every `reconcile_s`, and after a batch that says events may have been lost (a `gap`),
the whole source is listed and synced: what changed while no one watched, or in events the OS
dropped, is found there. In between, each batch of changed
paths is a sync of those paths alone (`Scope`), through the same change detection, manifest,
write path and delete guard as any run. A file still being written is not read half-written:
a path whose mtime is younger than `settle_s` waits until it has been left alone that long.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ingest.sources.folder_events import ChangeBatch
from ingest.types import Scope
from pipelines.report import IngestReport

log = logging.getLogger("sluice.live")

SyncScope = Callable[[Scope | None, float | None], IngestReport | None]
"""Syncs the source, or only `Scope` of it (None: all of it, a reconcile); the float is when
the changes were seen, for the run's lag (None for a reconcile). None: it could not run now
(another run holds the index), to be tried again with the next batch."""


@dataclass(frozen=True)
class LiveOptions:
    settle_s: float = 0.3
    """A file must have been left alone this long before it is read."""
    settle_max_s: float = 30.0
    """A file written to for longer than this is read as it is, and again when it changes."""
    reconcile_s: float = 600.0
    """How often the whole source is listed anyway."""


def scope_of(paths: Iterable[Path]) -> Scope:
    """Each path as a document and as a folder: a gone path may have been either."""
    return Scope.of(frozenset(Path(os.path.normpath(p)).as_uri() for p in paths))  # no `..`


def unsettled(paths: Iterable[Path], settle_s: float, now: float | None = None) -> set[Path]:
    """The files among `paths` written to less than `settle_s` ago."""
    now = time.time() if now is None else now
    young = set()
    for path in paths:
        try:
            if path.is_file() and now - path.stat().st_mtime < settle_s:
                young.add(path)
        except OSError:  # gone meanwhile: the listing will say so
            continue
    return young


def run_live(
    sync: SyncScope,
    batches: Iterable[ChangeBatch],
    stop: threading.Event,
    options: LiveOptions | None = None,
) -> int:
    """Reconcile, then sync each batch until `stop` is set; returns the syncs run. A batch is
    acknowledged (`ChangeBatch.done`) only once a sync has covered it."""
    options = options or LiveOptions()
    runs = 0
    reconciled: float | None = None
    paths: set[Path] = set()
    uris: set[str] = set()
    acks: list[Callable[[], None]] = []
    seen_at: float | None = None
    for batch in batches:
        if stop.is_set():
            break
        if batch.done is not None:
            acks.append(batch.done)
        if batch.paths or batch.uris:
            paths |= batch.paths
            uris |= batch.uris
            seen_at = min(seen_at or batch.seen_at, batch.seen_at)
        if batch.gap:  # owed until a reconcile runs
            reconciled = None
        if reconciled is None or time.monotonic() - reconciled >= options.reconcile_s:
            scope: Scope | None = None  # all of it, what is pending too
        elif seen_at is not None:
            _settle(paths, options, stop)
            scope = _merged(scope_of(paths), uris)
        else:
            for ack in acks:  # what needed no sync (an event of another kind)
                ack()
            acks = []
            continue
        if sync(scope, None if scope is None else seen_at) is not None:
            runs += 1
            if scope is None:
                reconciled = time.monotonic()
            for ack in acks:
                ack()
            paths, uris, acks, seen_at = set(), set(), [], None
    return runs


def _merged(scope: Scope, uris: set[str]) -> Scope:
    return Scope(scope.uris | uris, scope.folders)


def _settle(paths: set[Path], options: LiveOptions, stop: threading.Event) -> None:
    """Waits until no file of the batch is being written (or `settle_max_s` passed)."""
    deadline = time.monotonic() + options.settle_max_s
    while (young := unsettled(paths, options.settle_s)) and time.monotonic() < deadline:
        if stop.wait(options.settle_s / 3):
            break
    if young:
        log.info("%d file(s) still being written after %.0f s: read as they are", len(young),
                 options.settle_max_s)  # fmt: skip
