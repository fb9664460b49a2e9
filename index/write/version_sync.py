"""Bringing one collection version level with another: the core of re-embed and rollback.

Memory is bounded by a page of points and the set of document versions, never by the points:
which of a page's ids the target lacks is asked of the target page by page, and stale versions
are found by streaming the target's (document, version) pairs.

Point ids are derived from (document, document version, chunk ordinal), so two versions of an
index that hold the same id hold the same chunk. Making `target` equal `source` is therefore a
set difference: write the points it lacks (payload copied, BM25 vector copied and re-weighted to
the target's avgdl where the two versions' differ, dense vector from the target's own model,
through the embedding cache) and delete the document versions it holds that `source` no longer
does. An empty target is a full build; a resumed build, or one caught up with writes that landed
meanwhile, only does the difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from chunking.types import indexed_text, text_hash
from config.sources import DEFAULT_TENANT
from index.bm25.stats import reweighable, reweight
from index.contracts import (
    TENANT_FIELD,
    Bm25Params,
    Embedder,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    StoredPoint,
    VectorStore,
)
from index.write.embedding_cache import EmbeddingCache
from index.write.writer import WriteStats, embed_cached

PAGE_SIZE = 1024
"""Points read, embedded and written at a time: one `encode` call sorts its texts by length, so
larger pages pad less (measured: 256 gave 0.84 of bare `encode`'s speed)."""


@dataclass
class SyncStats(WriteStats):
    source_points: int = 0
    stale_versions_removed: int = 0
    seconds: float = 0.0


def sync_version(
    store: VectorStore,
    source: str,
    target: str,
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncStats:
    """Makes `target` hold exactly `source`'s points, dense vectors from `embedder`.

    `progress(done, total)` is called after each page of `source`.
    """
    started = time.perf_counter()
    stats = SyncStats()
    total = store.count(source)
    bm25 = _bm25_change(store, source, target)
    source_versions: set[tuple[str, str]] = set()
    for page in store.read_points(source, PAGE_SIZE):
        source_versions.update(
            (str(p.payload["doc_id"]), str(p.payload["doc_version"])) for p in page
        )
        held = store.existing_ids(target, [p.id for p in page])
        missing = [p for p in page if p.id not in held]
        if missing:
            _write(store, target, missing, embedder, cache, stats, bm25)
        stats.source_points += len(page)
        if progress:
            progress(stats.source_points, max(total, stats.source_points))
    target_versions = {
        (str(payload["doc_id"]), str(payload["doc_version"]))
        for _, payload in store.scroll(target, ["doc_id", "doc_version"])
    }
    for doc_id, version in target_versions - source_versions:
        store.delete(
            target,
            PayloadFilter(must=[MatchAny("doc_id", [doc_id]), MatchAny("doc_version", [version])]),
        )
        stats.stale_versions_removed += 1
    stats.seconds = time.perf_counter() - started
    return stats


def _write(
    store: VectorStore,
    target: str,
    points: list[StoredPoint],
    embedder: Embedder,
    cache: EmbeddingCache | None,
    stats: SyncStats,
    bm25: tuple[Bm25Params, Bm25Params] | None = None,
) -> None:
    started = time.perf_counter()
    texts = [
        indexed_text(str(p.payload.get("context") or ""), str(p.payload["text"])) for p in points
    ]
    hashes = [
        str(p.payload.get("text_hash") or text_hash(t)) for p, t in zip(points, texts, strict=True)
    ]
    counts = [int(p.payload.get("token_count") or 0) for p in points]
    dense = embed_cached(embedder, cache, hashes, texts, stats, counts)
    embedded = time.perf_counter()
    store.upsert(
        target,
        [
            # Points of a collection made before tenants become the default tenant's.
            IndexedPoint(
                id=p.id,
                dense=d,
                sparse=reweight(p.sparse, *bm25) if bm25 else p.sparse,
                payload={TENANT_FIELD: DEFAULT_TENANT, **p.payload},
            )
            for p, d in zip(points, dense, strict=True)
        ],
    )
    stats.points_written += len(points)
    stats.embed_seconds += embedded - started
    stats.upsert_seconds += time.perf_counter() - embedded


def _bm25_change(
    store: VectorStore, source: str, target: str
) -> tuple[Bm25Params, Bm25Params] | None:
    """The two versions' BM25 parameters where vectors must be re-weighted between them (a
    version re-measured avgdl when it was built); None where they are copied as they are."""
    source_spec, target_spec = store.collection_spec(source), store.collection_spec(target)
    if source_spec is None or target_spec is None or source_spec.bm25 == target_spec.bm25:
        return None
    if not reweighable(source_spec.bm25, target_spec.bm25):
        return None  # counted other terms: only re-ingesting re-encodes those
    return source_spec.bm25, target_spec.bm25
