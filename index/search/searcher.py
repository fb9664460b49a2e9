"""Query an index the way it was built: its own embedding model and BM25 parameters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from config.sources import DEFAULT_TENANT
from index.bm25.encoder import Bm25Encoder
from index.contracts import (
    TENANT_FIELD,
    CollectionNotFoundError,
    CollectionSpec,
    Embedder,
    HybridOptions,
    IndexNotFoundError,
    MatchAny,
    PayloadFilter,
    QuantizedSearch,
    Reranker,
    RerankSkipped,
    ScoredPoint,
    SearchMode,
    SearchRequest,
    SearchResult,
    VectorStore,
)
from index.fusion import DEFAULT_HYBRID, FusionParams, fuse
from index.search.cache import BoundedCache, normalised_query

Vector = npt.NDArray[np.float32]


@dataclass
class SearchOutcome:
    result: SearchResult
    """`result.hits` is the final ranking; `first_stage` the ranking before reranking."""
    collection: str
    spec: CollectionSpec
    timings_ms: dict[str, float] = field(default_factory=dict)
    first_stage: list[ScoredPoint] = field(default_factory=list)
    rerank_scores: dict[str, float] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)
    options: HybridOptions = field(default_factory=lambda: DEFAULT_HYBRID)
    """What the search ran with, defaults and tuning applied."""
    cache: Literal["hit", "miss", ""] = ""
    """"hit" (answered from the result cache), "miss", or "" (no result cache)."""
    query_vector_cached: bool = False


def _without_payloads(points: list[ScoredPoint]) -> list[ScoredPoint]:
    return [ScoredPoint(p.id, p.score, {}) for p in points]


class IndexSearcher:
    """Resolves the alias on every call, so a moved alias is followed without a restart.

    >>> searcher = IndexSearcher(store, embedder_for=lambda spec: embedder)  # doctest: +SKIP
    >>> searcher.search("docs", "how do I install it?", mode="hybrid", limit=5).result.hits
    """

    def __init__(
        self,
        store: VectorStore,
        embedder_for: Callable[[CollectionSpec], Embedder],
        reranker: Reranker | None = None,
        rerank_candidates: int = 30,
        defaults: HybridOptions = DEFAULT_HYBRID,
        result_cache_entries: int = 0,
        query_vector_cache_entries: int = 0,
        quantized_search: QuantizedSearch | None = None,
    ) -> None:
        """`defaults`: complete hybrid options for a collection nobody tuned. The caches
        (`index/search/cache.py`) are for a long-lived server; 0 entries: none.
        `quantized_search`: how dense searches read a collection built with int8 vectors
        (default: rescored, oversampled twofold)."""
        self.defaults = defaults
        self.quantized_search = quantized_search or QuantizedSearch()
        self.results: BoundedCache[tuple[object, ...], SearchOutcome] = BoundedCache(
            result_cache_entries
        )
        self.query_vectors: BoundedCache[tuple[str, str, str], Vector] = BoundedCache(
            query_vector_cache_entries
        )
        self._serving: dict[str, str] = {}
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.store = store
        self.embedder_for = embedder_for
        self._encoders: dict[str, Bm25Encoder] = {}
        self._lock = threading.Lock()

    def bm25_for(self, spec: CollectionSpec) -> Bm25Encoder:
        """The collection's BM25 tokenizer and encoder, one per collection."""
        with self._lock:
            if spec.name not in self._encoders:
                self._encoders[spec.name] = Bm25Encoder(spec.bm25)
            return self._encoders[spec.name]

    def resolve(self, spec: CollectionSpec, options: HybridOptions | None) -> HybridOptions:
        """The options a search runs with: the request's, then the collection's tuned ones,
        then the defaults."""
        tuned = spec.tuning.options if spec.tuning else HybridOptions()
        return (options or HybridOptions()).over(tuned).over(self.defaults)

    def candidate_pool(self, alias: str, requested: HybridOptions | None = None) -> int:
        """The candidate pool a search of `alias` runs with: how deep a ranking is the same
        whichever `limit` cuts it (the depth paging and grouping work within)."""
        spec = self.store.collection_spec(self.store.resolve_alias(alias) or alias)
        options = (
            self.resolve(spec, requested)
            if spec
            else (requested or HybridOptions()).over(self.defaults)
        )
        assert options.candidate_pool is not None
        return options.candidate_pool

    def version(self, alias: str) -> tuple[str, str] | None:
        """The collection `alias` names and its write stamp: what a ranking is valid for
        (None: nothing ingested yet)."""
        collection = self.store.resolve_alias(alias) or alias
        try:
            return collection, self.store.write_stamp(collection)
        except CollectionNotFoundError:
            return None

    def search(
        self,
        alias: str,
        query: str,
        mode: SearchMode,
        limit: int,
        options: HybridOptions | None = None,
        payload_filter: PayloadFilter | None = None,
        rerank: bool = False,
        tenants: Sequence[str] | None = None,
        candidate_payloads: bool = False,
    ) -> SearchOutcome:
        """`limit` hits; in hybrid mode, fused from the candidate pool of each list (at least
        `limit`) as `options` (completed by `resolve`) say. `tenants`: only their points
        (None: every tenant's); every stage's candidates are confined, not just the hits.

        `alias` may also name a collection version directly (a re-embed evaluates one before
        it serves). A version dropped between resolving the alias and searching it (a switch
        and retention in between) is answered from the one the alias names now. The query is
        searched as `normalised_query` makes it. The hybrid candidate lists (`result.dense`,
        `result.sparse`) carry ids and scores only, unless `candidate_payloads` (what tuning
        scores them by); the hits always carry their payloads."""
        query = normalised_query(query)
        arguments = (
            alias,
            query,
            mode,
            limit,
            options,
            payload_filter,
            rerank,
            tenants,
            candidate_payloads,
        )
        try:
            return self._search_once(*arguments)
        except CollectionNotFoundError:
            return self._search_once(*arguments)

    def _search_once(
        self,
        alias: str,
        query: str,
        mode: SearchMode,
        limit: int,
        requested: HybridOptions | None,
        payload_filter: PayloadFilter | None,
        rerank: bool,
        tenants: Sequence[str] | None,
        candidate_payloads: bool,
    ) -> SearchOutcome:
        timings: dict[str, float] = {}
        resolved = self.store.resolve_alias(alias)
        collection = resolved or alias
        key: tuple[object, ...] = ()
        if self.results.enabled:
            self._follow(alias, collection)
            try:
                stamp = self.store.write_stamp(collection)
            except CollectionNotFoundError:
                if resolved:
                    raise  # dropped under this request: `search` asks again
                raise _not_ingested(alias) from None
            key = (
                collection,
                stamp,
                query,
                mode,
                limit,
                repr(requested),
                repr(payload_filter),
                rerank,
                None if tenants is None else tuple(sorted(tenants)),
                candidate_payloads,
            )
            if (cached := self.results.get(key)) is not None:
                return replace(cached, timings_ms={}, cache="hit")
        spec = self.store.collection_spec(collection)
        if spec is None:
            raise _not_ingested(alias)
        payload_filter = confined(payload_filter, tenants, spec)
        vector_cached = False
        options = self.resolve(spec, requested)
        assert options.candidate_pool is not None
        dense = sparse = None
        if mode in ("dense", "hybrid"):
            started = time.perf_counter()
            dense, vector_cached = self._query_vector(spec, query)
            timings["embed_ms"] = (time.perf_counter() - started) * 1000
        if mode in ("bm25", "hybrid"):
            started = time.perf_counter()
            sparse = self.bm25_for(spec).encode_query(query)
            timings["bm25_encode_ms"] = (time.perf_counter() - started) * 1000
        first_stage_limit = max(limit, self.rerank_candidates) if rerank else limit
        request = SearchRequest(
            mode=mode,
            limit=first_stage_limit,
            candidate_pool=max(options.candidate_pool, first_stage_limit),
            dense=dense,
            sparse=sparse,
            filter=payload_filter or PayloadFilter(),
            quantized=self.quantized_search if spec.vector_quantization != "none" else None,
            candidate_payloads=candidate_payloads,
        )
        started = time.perf_counter()
        result = self.store.search(collection, request)
        timings["search_ms"] = (time.perf_counter() - started) * 1000
        for ranking in (result.hits, result.dense, result.sparse):
            # Equal scores come back in the engine's storage order, which depends on the order
            # points were written in; by id, a ranking is the same in every copy of an index.
            ranking.sort(key=lambda point: (-point.score, point.id))
        if mode == "hybrid":
            started = time.perf_counter()
            result.hits = fuse(
                result.dense, result.sparse, FusionParams.of(options), first_stage_limit
            )
            timings["fusion_ms"] = (time.perf_counter() - started) * 1000
            if not candidate_payloads:
                started = time.perf_counter()
                result.hits = self._with_payloads(collection, result.hits)
                timings["payloads_ms"] = (time.perf_counter() - started) * 1000
        outcome = SearchOutcome(
            result=result,
            collection=collection,
            spec=spec,
            timings_ms=timings,
            first_stage=list(result.hits),
            options=options,
        )
        outcome.query_vector_cached = vector_cached
        if rerank:
            self._rerank(query, outcome, limit, options.rerank_blend)
        result.hits = result.hits[:limit]
        if self.results.enabled:
            outcome.cache = "miss"
            if not outcome.degraded:  # a degraded answer is not kept: the next may be whole
                self.results.put(key, self._slim(outcome))
        return outcome

    def _with_payloads(self, collection: str, hits: list[ScoredPoint]) -> list[ScoredPoint]:
        """The hits with their payloads, read in one call; a point deleted since it was
        found is left out."""
        payloads = {p.id: p.payload for p in self.store.fetch(collection, [h.id for h in hits])}
        return [
            ScoredPoint(hit.id, hit.score, payloads[hit.id]) for hit in hits if hit.id in payloads
        ]

    def _follow(self, alias: str, collection: str) -> None:
        """An alias that moved (a switch, a rollback) empties the result cache: its answers
        are unreachable by key already, and need not hold memory."""
        if self._serving.get(alias, collection) != collection:
            self.results.clear()
        self._serving[alias] = collection

    def _query_vector(self, spec: CollectionSpec, query: str) -> tuple[Vector, bool]:
        """The query's vector, and whether it came from the cache."""
        embedder = self.embedder_for(spec)
        if not self.query_vectors.enabled:
            return embedder.embed_query(query), False
        key = (embedder.cache_key, embedder.query_prefix, query)
        if (vector := self.query_vectors.get(key)) is not None:
            return vector, True
        vector = embedder.embed_query(query)
        vector.flags.writeable = False  # shared by every answer of this query
        self.query_vectors.put(key, vector)
        return vector, False

    @staticmethod
    def _slim(outcome: SearchOutcome) -> SearchOutcome:
        """What a cached answer keeps: the final hits whole; of each candidate list, ids and
        scores down to the last final hit (a hit's rank in each stage) and at least the top 10
        (the query log's agreement signal). A fraction of the memory of the whole lists."""
        final = {hit.id for hit in outcome.result.hits}

        def kept(points: list[ScoredPoint]) -> list[ScoredPoint]:
            last = max((rank for rank, p in enumerate(points) if p.id in final), default=-1)
            return _without_payloads(points[: max(last + 1, 10)])

        result = SearchResult(
            list(outcome.result.hits), kept(outcome.result.dense), kept(outcome.result.sparse)
        )
        return replace(outcome, result=result, first_stage=kept(outcome.first_stage))

    def _rerank(self, query: str, outcome: SearchOutcome, limit: int, blend: float | None) -> None:
        """Reorders the first `rerank_candidates` hits; on any problem keeps the first stage."""
        if self.reranker is None:
            outcome.degraded.append("rerank_unavailable: no reranker model is configured")
            return
        candidates = outcome.result.hits[: self.rerank_candidates]
        started = time.perf_counter()
        try:
            reranked = self.reranker.rerank(query, candidates, blend)
        except RerankSkipped as skipped:
            outcome.degraded.append(str(skipped))
            return
        finally:
            outcome.timings_ms["rerank_ms"] = (time.perf_counter() - started) * 1000
        outcome.rerank_scores = {r.point.id: r.rerank_score for r in reranked}
        # Hits below the rerank pool keep their first-stage order (and score) after it.
        tail = outcome.result.hits[self.rerank_candidates :]
        outcome.result.hits = [
            *(ScoredPoint(r.point.id, r.final_score, r.point.payload) for r in reranked),
            *tail,
        ][:limit]


def _not_ingested(alias: str) -> IndexNotFoundError:
    return IndexNotFoundError(f"index '{alias}' does not exist yet; ingest documents first")


def confined(
    payload_filter: PayloadFilter | None, tenants: Sequence[str] | None, spec: CollectionSpec
) -> PayloadFilter | None:
    """The filter with the tenant condition first among its musts: a request's own conditions
    can only narrow it (a filter is all of `must`, none of `must_not`). In a collection made
    before tenants every point is the default tenant's."""
    if tenants is None or (not spec.tenants and DEFAULT_TENANT in tenants):
        return payload_filter
    own = payload_filter or PayloadFilter()
    return PayloadFilter(
        must=(MatchAny(TENANT_FIELD, tuple(tenants)), *own.must), must_not=own.must_not
    )
