"""The embedded engine shared by every process of one data dir.

A Qdrant Edge shard opens in one process at a time. So the first process that opens the store
becomes its owner: it takes the owner lock (an OS file lock, released with the process, even on
SIGKILL), opens the shards and serves the other processes over a local channel
(`index/store/channel.py`). Every later process becomes a client of that owner and sends its
calls there: `sluice serve`, an ingest run, a scheduled deployment run, a re-embed and the
read-only commands all work on one data dir at once, and whichever started first serves the rest.
When the owner exits or dies, a client takes the shards over on its next call.

>>> store = SharedEdgeStore(Path(".sluice/qdrant"))  # doctest: +SKIP
>>> store.role  # doctest: +SKIP
'owner'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from index.contracts import (
    CollectionSpec,
    FetchedPoint,
    IndexedPoint,
    IndexLockedError,
    PayloadFilter,
    RetrievalTuning,
    SearchRequest,
    SearchResult,
    StoredPoint,
    StoreError,
)
from index.store.channel import KeyChanged, OwnerGone, ShardClient
from index.store.channel_owner import ShardServer
from index.store.edge_catalog import EdgeCatalog
from index.store.embedded import EdgeVectorStore
from index.store.leases import Lease, is_leased, lease_dir


class SharedEdgeStore:
    """A `VectorStore` over the embedded engine that any number of processes can open."""

    def __init__(self, path: Path, owner_wait_s: float = 30.0, deadline_s: float = 20.0) -> None:
        """`owner_wait_s`: how long to wait for an owner that holds the lock but does not listen
        yet (it is starting up) before giving up with `IndexLockedError`. `deadline_s`: how
        long any step over the channel may wait for an owner that does not answer (stopped,
        wedged) before the call fails with `OwnerUnresponsive`."""
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.owner_wait_s = owner_wait_s
        self.deadline_s = deadline_s
        # Not thread-local: a takeover may happen in one thread and the release in another.
        self._owner_lock = FileLock(self.path / "owner.lock", thread_local=False)
        self._local: EdgeVectorStore | None = None
        self._server: ShardServer | None = None
        self._client: ShardClient | None = None
        self._catalog = EdgeCatalog(self.path)
        self._election = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._holders: dict[str, ShardClient] = {}
        self._unleased: dict[str, str] = {}  # collection -> created_at, see `_holder`
        self._elect()

    @property
    def role(self) -> str:
        return "owner" if self._local is not None else "client"

    def _elect(self) -> None:
        """Become the owner if none is alive, else a client of the one that is. The owner
        lock decides, never a guess: an owner that holds it but does not answer in time is
        alive (stopped, busy) and is reported, not replaced."""
        deadline = time.monotonic() + self.owner_wait_s
        while True:
            try:
                self._owner_lock.acquire(timeout=0)
            except Timeout:
                try:
                    self._client = ShardClient(self.path, self.deadline_s)
                    return
                except (OwnerGone, KeyChanged, FileNotFoundError) as error:
                    # Starting up, just gone, or a new owner whose key was read half a moment
                    # too early: the lock and the key are read again.
                    if time.monotonic() > deadline:
                        raise IndexLockedError(
                            f"the embedded index at {self.path} is held by a process that does "
                            f"not answer ({error}); is an older Sluice version running on it?"
                        ) from error
                    time.sleep(0.1)
                    continue
            try:
                self._local = EdgeVectorStore(self.path)
                self._server = ShardServer(self._local, self.path, self.deadline_s)
            except BaseException:
                self._release()
                raise
            return

    def _take_over(self, gone: ShardClient) -> None:
        with self._election:
            if self._client is not gone:
                return  # another thread already re-elected
            gone.close()
            self._client = None
            self._elect()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        while True:
            local, client = self._local, self._client
            if local is not None:
                return getattr(local, name)(*args, **kwargs)
            if client is None:  # a re-election failed before: try again now
                with self._election:
                    if self._client is None and self._local is None:
                        self._elect()
                continue
            try:
                return client.call(name, *args, **kwargs)
            except (OwnerGone, KeyChanged):
                # Every call is safe to repeat: ids are deterministic, deletes are by filter,
                # and an alias move or a drop lands in the same state twice.
                self._take_over(client)

    def _scan(self, name: str, *args: Any) -> Iterator[Any]:
        local, client = self._local, self._client
        if local is not None:
            yield from getattr(local, name)(*args)
            return
        assert client is not None
        yield from _scanned(client, name, args, lambda: self._take_over(client), "the index")

    # -- collections another process holds (`index/store/leases.py`) --------------------------
    def _on(self, collection: str, name: str, *args: Any) -> Any:
        """A call on one collection: where this process holds its lease, here; where another
        does, over that holder's channel; else to the data dir's owner."""
        while True:
            lease = self._lease_of(collection)
            if lease is not None:
                return getattr(lease.store, name)(collection, *args)
            holder = self._holder(collection)
            if holder is None:
                return self._call(name, collection, *args)
            try:
                return holder.call(name, collection, *args)
            except (OwnerGone, KeyChanged):
                self._forget_holder(collection, holder)

    def _scan_on(self, collection: str, name: str, *args: Any) -> Iterator[Any]:
        lease = self._lease_of(collection)
        if lease is not None:
            yield from getattr(lease.store, name)(collection, *args)
            return
        holder = self._holder(collection)
        if holder is None:
            yield from self._scan(name, collection, *args)
            return
        yield from _scanned(
            holder,
            name,
            (collection, *args),
            lambda: self._forget_holder(collection, holder),
            collection,
        )

    def _lease_of(self, collection: str) -> Lease | None:
        lease = self._leases.get(collection)
        if lease is not None and not lease.held:  # dropped, through another process
            self._release_lease(collection)
            return None
        return lease

    def _holder(self, collection: str) -> ShardClient | None:
        """The channel to the process holding `collection`'s lease; None when none does (then
        the data dir's owner serves it). A shard this process has open is nobody else's."""
        local = self._local
        if local is not None and local.has_open(collection):
            return None
        # A lease is taken only to create a collection, before the catalog names it: one that
        # the catalog named before a probe found its lease free is nobody's for good (probing
        # costs ~0.1 ms a call; this copy of the collection is known by its creation time).
        made = self._catalog.current()["collections"].get(collection)
        made_at = None if made is None else made.get("created_at")
        if made_at is not None and self._unleased.get(collection) == made_at:
            return None
        deadline = time.monotonic() + self.owner_wait_s
        while True:
            holder = self._holders.get(collection)
            if holder is not None:
                return holder
            if not is_leased(self.path, collection):
                if made_at is not None:
                    self._unleased[collection] = made_at
                return None
            try:
                holder = ShardClient(lease_dir(self.path, collection), self.deadline_s)
            except (OwnerGone, KeyChanged, FileNotFoundError) as error:
                # Starting up or closing: the lease is read again.
                if time.monotonic() > deadline:
                    raise IndexLockedError(
                        f"{collection} is held by a process that does not answer ({error})"
                    ) from error
                time.sleep(0.05)
                continue
            with self._election:
                self._holders.setdefault(collection, holder)
                if self._holders[collection] is not holder:
                    holder.close()
                    holder = self._holders[collection]
            return holder

    def _forget_holder(self, collection: str, gone: ShardClient) -> None:
        with self._election:
            if self._holders.get(collection) is gone:
                del self._holders[collection]
        gone.close()

    def release_collections(self) -> None:
        """Hands the collections this process built to the data dir's owner. A long-lived
        process (a watcher, `sluice deploy`'s warm runs) calls it after each sync, so that an
        API answering those collections does not depend on it while it idles or is stopped."""
        for collection in list(self._leases):
            self._release_lease(collection)

    def _release_lease(self, collection: str) -> None:
        lease = self._leases.pop(collection, None)
        if lease is not None:
            lease.close()

    # -- VectorStore ------------------------------------------------------------------------
    def create_collection(self, spec: CollectionSpec) -> None:
        try:
            if self._local is None and spec.name not in self.list_collections():
                self._lease(spec)
            else:
                self._call("create_collection", spec)
        except ValueError:
            # Repeated after a takeover, the first attempt may already have landed.
            if self.collection_spec(spec.name) != spec:
                raise

    def _lease(self, spec: CollectionSpec) -> None:
        """Creates `spec` held by this process (a client: another process owns the data dir)."""
        lease = Lease(self.path, spec.name, self.owner_wait_s, self.deadline_s)
        try:
            lease.store.create_collection(spec)
        except BaseException:
            lease.close()
            raise
        self._leases[spec.name] = lease

    def drop_collection(self, name: str) -> None:
        self._on(name, "drop_collection")
        self._release_lease(name)

    # The catalog's reads come from its file, in any process (`EdgeCatalog`): a client's
    # `/retrieve` resolves its alias and spec without a round trip to the owner.
    def list_collections(self) -> list[str]:
        return self._catalog.collection_names()

    def collection_spec(self, name: str) -> CollectionSpec | None:
        return self._catalog.spec(name)

    def record_tuning(self, name: str, tuning: RetrievalTuning | None) -> None:
        self._on(name, "record_tuning", tuning)

    def resolve_alias(self, alias: str) -> str | None:
        return self._catalog.alias_target(alias)

    def set_alias(self, alias: str, collection: str) -> None:
        self._call("set_alias", alias, collection)

    def list_aliases(self) -> dict[str, str]:
        return self._catalog.aliases()

    def upsert(self, collection: str, points: Sequence[IndexedPoint]) -> None:
        self._on(collection, "upsert", list(points))

    def delete(self, collection: str, filter: PayloadFilter) -> None:
        self._on(collection, "delete", filter)

    def count(self, collection: str, filter: PayloadFilter | None = None) -> int:
        counted: int = self._on(collection, "count", filter)
        return counted

    def distinct_values(self, collection: str, key: str, limit: int = 1_000_000) -> int:
        distinct: int = self._on(collection, "distinct_values", key, limit)
        return distinct

    def scroll(
        self, collection: str, fields: Sequence[str], page_size: int = 1024
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._scan_on(collection, "scroll", list(fields), page_size)

    def read_points(self, collection: str, page_size: int = 256) -> Iterator[list[StoredPoint]]:
        return self._scan_on(collection, "read_points", page_size)

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        existing: set[str] = self._on(collection, "existing_ids", list(ids))
        return existing

    def fetch(self, collection: str, ids: Sequence[str], dense: bool = False) -> list[FetchedPoint]:
        fetched: list[FetchedPoint] = self._on(collection, "fetch", list(ids), dense)
        return fetched

    def search(self, collection: str, request: SearchRequest) -> SearchResult:
        result: SearchResult = self._on(collection, "search", request)
        return result

    def write_stamp(self, collection: str) -> str:
        stamp: str = self._on(collection, "write_stamp")
        return stamp

    def close(self) -> None:
        """An owner stops serving (its clients take over) and closes the shards; so does the
        holder of a collection's lease."""
        self.release_collections()
        with self._election:
            for holder in self._holders.values():
                holder.close()
            self._holders.clear()
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._local is not None:
                self._local.close()
                self._local = None
            self._release()

    def _release(self) -> None:
        if self._owner_lock.is_locked:
            self._owner_lock.release()


def _scanned(
    client: ShardClient, name: str, args: tuple[Any, ...], gone: Callable[[], None], what: str
) -> Iterator[Any]:
    """A scan over a channel; cut off when its process goes (`gone` re-routes later calls)."""
    try:
        yield from client.scan(name, *args)
    except OwnerGone as error:
        gone()
        raise StoreError(
            f"the process that held {what} went away during a scan; run again "
            "(every pipeline resumes where it stopped)"
        ) from error
