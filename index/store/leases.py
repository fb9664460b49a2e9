"""A collection held by the process that builds it, not by the data dir's owner.

The embedded engine holds the GIL while it opens a shard (`EdgeShard.load`, ~0.2-1 s at
~100,000 chunks) and while it writes a batch, so every write that crosses the channel into the
owner's process, and every optimised segment swapped in there, pauses the owner's searches. When
`sluice serve` owns the data dir, that was a pause of `/retrieve` for each segment an ingest of
another index or a re-embed wrote (docs/benchmarks.md, "No stall while serving").

So a process that creates a collection while another process owns the data dir keeps it: it
takes the collection's lease (an OS file lock, released with the process, even on SIGKILL),
opens the shard itself, and serves that one collection to the others on a channel of its own
under `leases/<collection>/`. Its writes and swaps happen in its own process. When it closes
the store or dies, the lease is free and the data dir's owner opens the collection on the next
call, as it does any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from index.contracts import StoreError
from index.store.channel import OwnerGone
from index.store.channel_owner import ShardServer
from index.store.embedded import EdgeVectorStore


def lease_dir(store_dir: Path, collection: str) -> Path:
    return store_dir / "leases" / collection


def _lock(store_dir: Path, collection: str) -> FileLock:
    folder = lease_dir(store_dir, collection)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return FileLock(folder / "lease.lock", thread_local=False)


def is_leased(store_dir: Path, collection: str) -> bool:
    """Whether another process holds the collection's lease now. A holder that has just gone
    is seen as gone: the caller's next call goes to the data dir's owner."""
    if not lease_dir(store_dir, collection).is_dir():
        return False
    lock = _lock(store_dir, collection)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


class _LeasedShard(EdgeVectorStore):
    """This process's store for the one collection it holds: any other name is refused, so a
    stale client never makes the holder open a shard that is not its own."""

    def __init__(self, path: Path, collection: str, lock: FileLock) -> None:
        super().__init__(path, recover_orphans=False)
        self.collection = collection
        self._lease_lock = lock

    def _shard(self, name: str) -> Any:
        if name != self.collection:
            raise StoreError(f"this process holds only {self.collection}, not {name}")
        if not self._lease_lock.is_locked:  # released while a call was on its way
            raise OwnerGone(f"this process no longer holds {name}")
        return super()._shard(name)

    def drop_collection(self, name: str) -> None:
        """Dropped (by any process, through this one): the lease ends at once, so that the
        name can be made again by whoever asks."""
        super().drop_collection(name)
        if name == self.collection and self._lease_lock.is_locked:
            self._lease_lock.release()


class Lease:
    """The collection `collection` created and served by this process until `close()`."""

    def __init__(self, store_dir: Path, collection: str, wait_s: float, deadline_s: float) -> None:
        self.collection = collection
        self._lock = _lock(store_dir, collection)
        try:
            self._lock.acquire(timeout=wait_s)  # another process's probe holds it an instant
        except Timeout as error:
            raise ValueError(f"collection {collection} already exists") from error
        try:
            self.store = _LeasedShard(store_dir, collection, self._lock)
            # Listening before the collection exists: whoever sees it in the catalog finds
            # its holder answering.
            self.server = ShardServer(self.store, lease_dir(store_dir, collection), deadline_s)
        except BaseException:
            self._lock.release()
            raise

    @property
    def held(self) -> bool:
        """False once the collection was dropped."""
        return self._lock.is_locked

    def close(self) -> None:
        """Stops serving (clients turn to the data dir's owner), closes the shard, and frees
        the lease: in that order, so that nobody opens the shard while it is still open. An
        optimisation in progress is let finish first, while the others' calls are answered."""
        try:
            self.store.settle()
        finally:
            self.server.close()
            try:
                self.store.close()
            finally:
                if self._lock.is_locked:
                    self._lock.release()
