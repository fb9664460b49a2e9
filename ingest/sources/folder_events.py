"""A local folder's file events, as batches of paths that changed: what a live folder syncs
instead of listing everything.

The OS reports them (inotify, FSEvents, ReadDirectoryChangesW) through `watchfiles`, which
groups a burst: a batch is ready once no new event came for `step_ms`, or after `debounce_ms`
of events without a pause. A thread takes each batch as it is ready and stamps it then, so the
time a change waits behind a sync still running counts in its lag; whatever piled up meanwhile
is handed over as one batch, so a `git checkout` of a thousand files is a few syncs, not a
thousand. A batch names paths, not what happened to them: listing those paths decides (a path
that is gone was deleted; a renamed folder is its old path gone and its new one new). Events
can be lost (a change before the watch began, an overflowing event queue, a restart): the caller
reconciles by listing the whole folder on start, every so often, and after a batch so large
that the kernel's event queue may have overflowed on its way (a `gap`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

IDLE_S = 1.0
"""A batch, empty, comes at least this often while nothing changes: the caller's chance to stop
or reconcile."""


@dataclass(frozen=True)
class ChangeBatch:
    """What changed in a source since the last batch; empty: nothing for `IDLE_S`."""

    paths: frozenset[Path]
    """Local files or folders created, written, renamed (both names) or deleted."""
    seen_at: float
    """When the oldest of its changes was seen (`time.time()`)."""
    uris: frozenset[str] = frozenset()
    """Documents named by uri (an S3 event's objects), synced as they are: nothing to settle."""
    done: Callable[[], None] | None = None
    """Acknowledges the batch once its changes are synced (an event queue's messages)."""
    gap: bool = False
    """Events may have been lost around it: the caller lists the whole source."""


def storm_paths() -> int:
    """A batch this large may have overflowed the kernel's event queue on its way (a quarter
    of inotify's `max_queued_events`), and `watchfiles` does not say when it did."""
    try:
        queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except (OSError, ValueError):
        queued = 16_384  # Linux's default
    return max(1, queued // 4)


def folder_events(
    root: Path,
    stop: threading.Event,
    debounce_ms: int = 1000,
    step_ms: int = 50,
    storm: int | None = None,
) -> Iterator[ChangeBatch]:
    """Batches of changed paths under `root` until `stop` is set. Every event counts: the
    source's include and exclude globs apply when its paths are listed. The watch is set up
    before the first batch is handed over. A batch of `storm` paths or more (`storm_paths()`)
    is marked as a `gap`."""
    from watchfiles import watch

    storm = storm or storm_paths()

    ready: queue.Queue[ChangeBatch | BaseException] = queue.Queue()
    started = threading.Event()

    def take() -> None:
        try:
            changes = watch(
                root,
                watch_filter=None,
                debounce=debounce_ms,
                step=step_ms,
                stop_event=stop,
                rust_timeout=int(IDLE_S * 1000),
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,
            )
            for found in changes:
                started.set()
                if found:
                    paths = frozenset(Path(p) for _, p in found)
                    ready.put(ChangeBatch(paths, time.time(), gap=len(found) >= storm))
        except BaseException as error:  # handed to the caller: a watch that cannot go on
            ready.put(error)
        finally:
            started.set()

    threading.Thread(target=take, name="folder-events", daemon=True).start()
    started.wait()
    while not stop.is_set():
        try:
            first = ready.get(timeout=IDLE_S)
        except queue.Empty:
            yield ChangeBatch(frozenset(), time.time())
            continue
        batches = [first]
        while not ready.empty():
            batches.append(ready.get_nowait())
        if errors := [b for b in batches if isinstance(b, BaseException)]:
            raise errors[0]
        merged = [b for b in batches if isinstance(b, ChangeBatch)]
        yield ChangeBatch(
            frozenset().union(*(b.paths for b in merged)),
            min(b.seen_at for b in merged),
            gap=any(b.gap for b in merged),
        )
