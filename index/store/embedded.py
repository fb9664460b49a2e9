"""The embedded engine: Qdrant Edge shards on local disk, one per collection.

Qdrant Edge (`qdrant-edge-py`) is Qdrant's Rust engine in-process. A shard has no collections or
aliases of its own, so this store keeps a small catalog (`catalog.json`, replaced atomically)
that names each collection's shard folder, its `CollectionSpec`, and the aliases. Why this engine
and not qdrant-client's local mode: docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.file_modes import tighten_tree
from index.contracts import (
    DENSE_VECTOR,
    SPARSE_VECTOR,
    CollectionNotFoundError,
    CollectionSpec,
    FetchedPoint,
    IndexedPoint,
    IndexLockedError,
    PayloadFilter,
    RetrievalTuning,
    SearchRequest,
    SearchResult,
)
from index.store.edge_catalog import EdgeCatalog
from index.store.edge_queries import EdgeQuery
from index.store.filters import to_edge_filter
from index.store.optimizer import copy_for_optimising, optimise_in_child, recover, swap_in
from index.store.records import PagedReads, fetched_points, scored_points
from index.store.shard_config import SEGMENT_KB, create_payload_indexes, shard_config

logger = logging.getLogger("sluice.index")


class EdgeVectorStore(PagedReads):
    """Collections and aliases over Qdrant Edge shards under `path`.

    >>> store = EdgeVectorStore(Path(".sluice/qdrant"))
    >>> store.resolve_alias("docs")  # doctest: +SKIP
    'docs__v1'

    `segment_kb` sets when the appendable segment is optimised (`SEGMENT_KB`); `optimise_apart`
    does it in a child process on a copy, so searches go on meanwhile (`index/store/optimizer.py`);
    false: in this process, which answers nothing until it is done.
    """

    def __init__(
        self,
        path: Path,
        segment_kb: int = SEGMENT_KB,
        optimise_apart: bool = True,
        recover_orphans: bool = True,
    ) -> None:
        import qdrant_edge

        self._edge: Any = qdrant_edge
        self.path = path
        self._segment_kb = segment_kb
        # Dense vectors per collection not yet in an optimised segment.
        self._unindexed: dict[str, int] = {}
        self.path.mkdir(parents=True, exist_ok=True)
        self._catalog = EdgeCatalog(self.path)
        self._shards: dict[str, Any] = {}
        self._lock = threading.RLock()
        # Every write passes through the one process that holds the shards: a counter there,
        # with an id of this opening so that a takeover never repeats an earlier stamp.
        self._opened = uuid.uuid4().hex
        self._writes: dict[str, int] = {}
        # Collections a child process is optimising (`index/store/optimizer.py`): their writes
        # wait for `_settled`, their searches go on.
        self._optimising: dict[str, threading.Thread] = {}
        self._settled = threading.Condition(self._lock)
        self.optimise_apart = optimise_apart
        if recover_orphans:  # leftovers of dropped collections; the others' when first opened
            catalogued = self._catalog.current()["collections"]
            recover(self.path / "collections", lambda name: name not in catalogued)

    def _shard_dir(self, name: str) -> Path:
        return self.path / "collections" / name

    def _shard(self, name: str) -> Any:
        with self._lock:
            if name not in self._shards:
                if name not in self._catalog.current()["collections"]:
                    raise CollectionNotFoundError(f"collection {name} does not exist")
                # A crash mid-optimisation, by this process or one that held the shard before.
                recover(self.path / "collections", lambda collection: collection == name)
                self._load(name)
            return self._shards[name]

    def has_open(self, name: str) -> bool:
        """Whether this process has the collection's shard open (then nobody else has)."""
        return name in self._shards

    def _config(self, spec: CollectionSpec) -> Any:
        return shard_config(self._edge, spec, self._segment_kb)

    def _load(self, name: str) -> Any:
        """Open a shard with this version's optimiser settings (a shard made by an older one
        takes them on), and count its points not yet optimised: each has a dense and a BM25
        vector, of which only the BM25 one is indexed until its segment is optimised."""
        spec = self.collection_spec(name)
        if spec is None:
            raise CollectionNotFoundError(f"collection {name} does not exist")
        shard = self._open(self._edge.EdgeShard.load, self._shard_dir(name), self._config(spec))
        # The engine writes its config files 0644 whatever the umask (edge_config.json,
        # each segment's segment.json): after a create, an optimise or a swap, they are made
        # the user's alone like the rest of the data dir.
        tighten_tree(self._shard_dir(name))
        info = shard.info()
        self._unindexed[name] = max(0, 2 * info.points_count - info.indexed_vectors_count)
        self._shards[name] = shard
        return shard

    def _open(self, opener: Any, shard_dir: Path, *args: Any) -> Any:
        try:
            return opener(str(shard_dir), *args)
        except Exception as error:
            if "WouldBlock" in str(error):
                raise IndexLockedError(
                    f"the embedded index at {self.path} is open in another process that "
                    "does not share it (a Sluice version before shared embedded stores?)"
                ) from error
            raise

    # -- collections and aliases -------------------------------------------------------------
    def create_collection(self, spec: CollectionSpec) -> None:
        edge = self._edge
        with self._lock, self._catalog.lock:
            catalog = self._catalog.read()
            if spec.name in catalog["collections"]:
                raise ValueError(f"collection {spec.name} already exists")
            shard_dir = self._shard_dir(spec.name)
            if shard_dir.exists():
                # A shard the catalog does not name: a crashed create, most likely. It is set
                # aside, never deleted on a guess.
                shard_dir.rename(shard_dir.with_name(f".orphan-{spec.name}-{time.time_ns()}"))
            shard = self._open(edge.EdgeShard.create, shard_dir, self._config(spec))
            create_payload_indexes(edge, shard, spec)
            shard.flush()
            tighten_tree(shard_dir)  # as in `_load`
            self._shards[spec.name] = shard
            self._unindexed[spec.name] = 0
            catalog["collections"][spec.name] = spec.to_metadata()
            self._catalog.write(catalog)

    def drop_collection(self, name: str) -> None:
        with self._lock:
            self._wait_settled(name)
        with self._lock, self._catalog.lock:
            shard = self._shards.pop(name, None)
            self._unindexed.pop(name, None)
            self._wrote(name)
            if shard is not None:
                shard.close()
            catalog = self._catalog.read()
            catalog["collections"].pop(name, None)
            catalog["aliases"] = {a: c for a, c in catalog["aliases"].items() if c != name}
            self._catalog.write(catalog)
            shutil.rmtree(self._shard_dir(name), ignore_errors=True)

    def list_collections(self) -> list[str]:
        return self._catalog.collection_names()

    def collection_spec(self, name: str) -> CollectionSpec | None:
        return self._catalog.spec(name)

    def record_tuning(self, name: str, tuning: RetrievalTuning | None) -> None:
        with self._lock, self._catalog.lock:
            catalog = self._catalog.read()
            data = catalog["collections"].get(name)
            if data is None:
                raise CollectionNotFoundError(f"collection {name} does not exist")
            spec = dataclasses.replace(CollectionSpec.from_metadata(data), tuning=tuning)
            catalog["collections"][name] = spec.to_metadata()
            self._catalog.write(catalog)
            self._wrote(name)

    def resolve_alias(self, alias: str) -> str | None:
        return self._catalog.alias_target(alias)

    def set_alias(self, alias: str, collection: str) -> None:
        with self._lock, self._catalog.lock:
            catalog = self._catalog.read()
            if collection not in catalog["collections"]:
                raise CollectionNotFoundError(f"collection {collection} does not exist")
            catalog["aliases"][alias] = collection
            self._catalog.write(catalog)

    def list_aliases(self) -> dict[str, str]:
        return self._catalog.aliases()

    # -- points ------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[IndexedPoint]) -> None:
        if not points:
            return
        edge = self._edge
        edge_points = [
            edge.Point(
                point.id,
                {
                    DENSE_VECTOR: point.dense.tolist(),
                    SPARSE_VECTOR: edge.SparseVector(point.sparse.indices, point.sparse.values),
                },
                point.payload,
            )
            for point in points
        ]
        with self._lock:
            self._wait_settled(collection)
            shard = self._shard(collection)
            shard.update(edge.UpdateOperation.upsert_points(edge_points))
            self._unindexed[collection] += len(points)
            if self._unindexed[collection] * points[0].dense.nbytes >= self._segment_kb * 1024:
                if self.optimise_apart:
                    self._start_optimising(collection)
                else:
                    self._optimize(collection)
            self._wrote(collection)

    def _wait_settled(self, collection: str) -> None:
        """Writes wait while a child optimises a copy of the shard (what they wrote would be
        lost with the original); the caller holds the lock, which the wait gives up."""
        while collection in self._optimising:
            self._settled.wait()

    def _start_optimising(self, collection: str) -> None:
        spec = self.collection_spec(collection)
        assert spec is not None
        self._shards[collection].flush()
        worker = threading.Thread(
            target=self._optimise_in_child,
            args=(collection, spec),
            name=f"optimise-{collection}",
            daemon=True,
        )
        self._optimising[collection] = worker
        worker.start()

    def _optimise_in_child(self, collection: str, spec: CollectionSpec) -> None:
        shard_dir, replaced = self._shard_dir(collection), None
        try:
            optimised = copy_for_optimising(shard_dir)  # no lock: searches go on, writes wait
            failure = optimise_in_child(optimised, spec.to_metadata(), self._segment_kb)
            with self._lock:
                if failure:
                    shutil.rmtree(optimised, ignore_errors=True)
                    logger.warning("optimising %s apart failed (%s); here", collection, failure)
                    self._optimize(collection)
                    return
                self._shards.pop(collection).close()
                replaced = swap_in(shard_dir, optimised)
                self._load(collection)
        finally:
            with self._lock:
                self._optimising.pop(collection, None)
                self._settled.notify_all()
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)

    def _optimize(self, collection: str) -> None:
        """Build the appendable segment into an optimised one (and the int8 copies of a
        quantised collection, which only optimised segments hold), as a server does in the
        background. The shard is then reopened: the engine keeps the RAM it wrote the old
        appendable segment with until then (measured: ~4 kB a chunk, docs/benchmarks.md)."""
        shard = self._shards[collection]
        shard.optimize()
        shard.flush()
        shard.close()
        del self._shards[collection]
        self._load(collection)

    def delete(self, collection: str, filter: PayloadFilter) -> None:
        if not filter:
            raise ValueError("refusing to delete with an empty filter")
        with self._lock:
            self._wait_settled(collection)
            self._shard(collection).update(
                self._edge.UpdateOperation.delete_points_by_filter(to_edge_filter(filter))
            )
            self._wrote(collection)

    def _wrote(self, collection: str) -> None:
        self._writes[collection] = self._writes.get(collection, 0) + 1

    def write_stamp(self, collection: str) -> str:
        if collection not in self._catalog.current()["collections"]:
            raise CollectionNotFoundError(f"collection {collection} does not exist")
        return f"{self._opened}:{self._writes.get(collection, 0)}"

    def count(self, collection: str, filter: PayloadFilter | None = None) -> int:
        request = self._edge.CountRequest(filter=to_edge_filter(filter), exact=True)
        with self._lock:
            return int(self._shard(collection).count(request))

    def distinct_values(self, collection: str, key: str, limit: int = 1_000_000) -> int:
        request = self._edge.FacetRequest(key=key, limit=limit, exact=True)
        with self._lock:
            # The engine keeps a deleted value in its facet with a count of 0.
            return sum(1 for hit in self._shard(collection).facet(request).hits if hit.count > 0)

    def _page(
        self, collection: str, offset: Any, page_size: int, with_payload: Any, with_vector: Any
    ) -> tuple[list[Any], Any]:
        """Each page under the lock on its own, so searches interleave with a long scroll."""
        request = self._edge.ScrollRequest(
            offset=offset, limit=page_size, with_payload=with_payload, with_vector=with_vector
        )
        with self._lock:
            records, next_offset = self._shard(collection).scroll(request)
        return list(records), next_offset

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self._lock:
            records = self._shard(collection).retrieve(list(ids), False, False)
        return {str(record.id) for record in records}

    def fetch(self, collection: str, ids: Sequence[str], dense: bool = False) -> list[FetchedPoint]:
        if not ids:
            return []
        with self._lock:
            records = self._shard(collection).retrieve(
                list(ids), True, [DENSE_VECTOR] if dense else False
            )
        return fetched_points(records)

    def search(self, collection: str, request: SearchRequest) -> SearchResult:
        query = EdgeQuery(self._edge, request)
        dense_query, sparse_query, single = query.dense, query.sparse, query.request
        with self._lock:
            shard = self._shard(collection)
            if request.mode == "dense":
                if dense_query is None:
                    return SearchResult(hits=[])
                return SearchResult(
                    hits=scored_points(shard.query(single(dense_query, request.limit)))
                )
            if request.mode == "bm25":
                if sparse_query is None:
                    return SearchResult(hits=[])
                return SearchResult(
                    hits=scored_points(shard.query(single(sparse_query, request.limit)))
                )
            batch = [
                single(q, request.candidate_pool, request.candidate_payloads)
                for q in (dense_query, sparse_query)
                if q
            ]
            answers = shard.query_batch(self._edge.QueryBatchRequest(batch)) if batch else []
        dense = scored_points(answers[0]) if dense_query is not None else []
        sparse = scored_points(answers[-1]) if sparse_query is not None else []
        return SearchResult(hits=[], dense=dense, sparse=sparse)

    def flush(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()

    def settle(self) -> None:
        """Waits until no optimisation is in progress (what a test or a benchmark measures
        after)."""
        with self._lock:
            for collection in list(self._optimising):
                self._wait_settled(collection)

    def close(self) -> None:
        """Waits for optimisations in progress: their copies become the shards."""
        with self._lock:
            self.settle()
            for name, shard in self._shards.items():
                shard.flush()
                shard.close()
                tighten_tree(self._shard_dir(name))  # the close rewrote segment.json
            self._shards.clear()
