"""Query an index the way it was built: its own embedding model and BM25 parameters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from index.bm25 import Bm25Encoder
from index.embedder import SentenceTransformerEmbedder
from index.fusion import FusionParams, fuse
from index.types import (
    CollectionSpec,
    PayloadFilter,
    SearchMode,
    SearchRequest,
    SearchResult,
    VectorStore,
)


class IndexNotFoundError(LookupError):
    """The alias names no collection yet (nothing was ingested)."""


@dataclass
class SearchOutcome:
    result: SearchResult
    collection: str
    spec: CollectionSpec
    timings_ms: dict[str, float] = field(default_factory=dict)


class IndexSearcher:
    """Resolves the alias on every call, so a moved alias is followed without a restart.

    >>> searcher = IndexSearcher(store, embedder_for=lambda model: embedder)  # doctest: +SKIP
    >>> searcher.search("docs", "how do I install it?", mode="hybrid", limit=5).result.hits
    """

    def __init__(
        self,
        store: VectorStore,
        embedder_for: Callable[[str], SentenceTransformerEmbedder],
    ) -> None:
        self.store = store
        self.embedder_for = embedder_for
        self._encoders: dict[str, Bm25Encoder] = {}
        self._lock = threading.Lock()

    def _bm25(self, spec: CollectionSpec) -> Bm25Encoder:
        with self._lock:
            if spec.name not in self._encoders:
                self._encoders[spec.name] = Bm25Encoder(spec.bm25)
            return self._encoders[spec.name]

    def search(
        self,
        alias: str,
        query: str,
        mode: SearchMode,
        limit: int,
        candidate_pool: int = 50,
        fusion: FusionParams | None = None,
        payload_filter: PayloadFilter | None = None,
    ) -> SearchOutcome:
        """`limit` hits; in hybrid mode, fused from `candidate_pool` dense and BM25 candidates."""
        timings: dict[str, float] = {}
        collection = self.store.resolve_alias(alias)
        spec = self.store.collection_spec(collection) if collection else None
        if collection is None or spec is None:
            raise IndexNotFoundError(f"index '{alias}' does not exist yet; ingest documents first")
        dense = sparse = None
        if mode in ("dense", "hybrid"):
            started = time.perf_counter()
            dense = self.embedder_for(spec.embedding_model).embed_query(query)
            timings["embed_ms"] = (time.perf_counter() - started) * 1000
        if mode in ("bm25", "hybrid"):
            started = time.perf_counter()
            sparse = self._bm25(spec).encode_query(query)
            timings["bm25_encode_ms"] = (time.perf_counter() - started) * 1000
        request = SearchRequest(
            mode=mode,
            limit=limit,
            candidate_pool=max(candidate_pool, limit),
            dense=dense,
            sparse=sparse,
            filter=payload_filter or PayloadFilter(),
        )
        started = time.perf_counter()
        result = self.store.search(collection, request)
        timings["search_ms"] = (time.perf_counter() - started) * 1000
        if mode == "hybrid":
            started = time.perf_counter()
            result.hits = fuse(result.dense, result.sparse, fusion or FusionParams(), limit)
            timings["fusion_ms"] = (time.perf_counter() - started) * 1000
        return SearchOutcome(result=result, collection=collection, spec=spec, timings_ms=timings)
