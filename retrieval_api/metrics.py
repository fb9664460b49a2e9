"""Prometheus metrics at `/metrics`: what the API answered, and the state of its indexes.

Request counters and stage histograms are kept by this process. Everything about indexes and
ingest runs is read at scrape time from the store and the index's manifest, which every process
that writes the index (ingest runs, re-embeds, rollbacks) keeps up to date: no pushgateway, and
a run in another process shows on the next scrape.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retrieval_api.run_totals import RunTotals, SourceFigures

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELS_KEY = "sluice_metric_labels"
"""Where a route leaves the labels only it knows (mode, tenant) in the request's state."""


class ApiMetrics:
    """One registry per app, so that two apps in one process (tests) never share counts."""

    def __init__(self, indexes: Collector) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sluice_requests",
            "HTTP requests answered, by route, status, search mode and tenant",
            ["route", "status", "mode", "tenant"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "sluice_retrieve_stage_seconds",
            "Time /retrieve spent per stage: embed, bm25_encode, search (the dense and BM25 "
            "queries, batched), fusion, rerank, total",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.degraded = Counter(
            "sluice_retrieve_degraded",
            "Answers given without a stage, by reason (e.g. rerank_budget)",
            ["reason"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "sluice_feedback_items",
            "Feedback items stored (POST /feedback), by label",
            ["label"],
            registry=self.registry,
        )
        # Replicas behind one address are told apart by this, whichever one a scrape reached.
        Info(
            "sluice_replica",
            "The API process these figures are of (its counters are its own)",
            registry=self.registry,
        ).info(
            {
                "host": socket.gethostname(),
                "pid": str(os.getpid()),
                "started": str(int(time.time())),
            }
        )
        self.registry.register(indexes)

    def observe_search(self, timings_ms: dict[str, float], degraded: list[str]) -> None:
        """A cached answer has only its total: the stage histograms count computed answers."""
        for name, milliseconds in timings_ms.items():
            self.stage_seconds.labels(name.removesuffix("_ms")).observe(milliseconds / 1000)
        for reason in degraded:
            self.degraded.labels(reason.split(":", 1)[0]).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CacheCollector(Collector):
    """Hits and misses of the serving caches (`index/search/cache.py`), read at scrape time."""

    def __init__(self, caches: Any) -> None:
        """`caches()`: (name, cache) pairs, none before the app serves."""
        self.caches = caches

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        lookups = CounterMetricFamily(
            "sluice_cache_lookups",
            "Lookups of the result and query-vector caches, by outcome (hit, miss)",
            labels=["cache", "outcome"],
        )
        entries = GaugeMetricFamily(
            "sluice_cache_entries", "Entries held, and the bound", labels=["cache", "of"]
        )
        for name, cache in self.caches():
            lookups.add_metric([name, "hit"], cache.hits)
            lookups.add_metric([name, "miss"], cache.misses)
            entries.add_metric([name, "held"], len(cache))
            entries.add_metric([name, "bound"], cache.entries)
        yield from (lookups, entries)


class RequestCounter:
    """ASGI middleware counting every answered request, refused ones included."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            mode, tenant = scope.get("state", {}).get(LABELS_KEY, ("", ""))
            route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
            self.metrics.requests.labels(route, str(status), mode, tenant).inc()


KNOWN_ROUTES = frozenset(
    {"/retrieve", "/feedback", "/health", "/ready", "/metrics", "/docs", "/openapi.json"}
)


class IndexCollector(Collector):
    """Per index at scrape time: the serving version and model, points, documents by status,
    versions and their gate scores, ingest runs by source and outcome, documents and chunks
    per outcome, embedding throughput, and each source's last successful run."""

    def __init__(self, read: Any) -> None:
        """`read()`: the store, a manifest opener and an index's storage in bytes, for this
        scrape."""
        self.read = read
        self.run_totals = RunTotals()

    def describe(self) -> list[Any]:
        """Nothing up front: the indexes are read at scrape time, once the app serves."""
        return []

    def collect(self) -> Iterator[Any]:
        store, manifest_of, storage_of = self.read()
        info = InfoMetricFamily("sluice_index", "The collection version an index serves")
        points = GaugeMetricFamily(
            "sluice_index_points", "Points in the serving version", labels=["index"]
        )
        documents = GaugeMetricFamily(
            "sluice_index_documents", "Documents by status", labels=["index", "status"]
        )
        versions = GaugeMetricFamily(
            "sluice_index_version_state",
            "1 for each version's state (building, serving, retired, rejected, dropped)",
            labels=["index", "collection", "state"],
        )
        scores = GaugeMetricFamily(
            "sluice_index_version_score",
            "A version's gate score on the golden set",
            labels=["index", "collection", "mode", "metric"],
        )
        runs = CounterMetricFamily(
            "sluice_ingest_runs", "Ingest runs by outcome", labels=["index", "source", "state"]
        )
        outcomes = CounterMetricFamily(
            "sluice_ingest_documents",
            "Documents of ingest runs by outcome",
            labels=["index", "source", "outcome"],
        )
        chunks = CounterMetricFamily(
            "sluice_ingest_chunks",
            "Chunks written and embedded",
            labels=["index", "source", "kind"],
        )
        throughput = GaugeMetricFamily(
            "sluice_ingest_embed_chunks_per_second",
            "Embedding throughput of each source's last run that embedded anything",
            labels=["index", "source"],
        )
        last_success = GaugeMetricFamily(
            "sluice_ingest_last_success_timestamp_seconds",
            "When each source's last completed run ended",
            labels=["index", "source"],
        )
        cpu = CounterMetricFamily(
            "sluice_ingest_cpu_seconds",
            "CPU seconds of ingest runs (the run's process and its parse workers)",
            labels=["index", "source"],
        )
        tokens = CounterMetricFamily(
            "sluice_ingest_tokens_embedded",
            "Tokens of the chunks ingest runs embedded (cache hits excluded)",
            labels=["index", "source"],
        )
        cost = CounterMetricFamily(
            "sluice_ingest_estimated_cost",
            "Estimated compute cost of ingest runs, at the SLUICE_COST_* rates of each run",
            labels=["index", "source"],
        )
        lag = GaugeMetricFamily(
            "sluice_source_lag_seconds",
            "Of a live source's last batch: seconds from its changes being seen to their being "
            "searchable",
            labels=["index", "source"],
        )
        storage = GaugeMetricFamily(
            "sluice_index_storage_bytes",
            "Bytes the index's kept versions take: on disk (embedded engine), else estimated",
            labels=["index"],
        )
        for alias, collection in store.list_aliases().items():
            spec = store.collection_spec(collection)
            info.add_metric(
                [],
                {
                    "index": alias,
                    "collection": collection,
                    "embedding_model": spec.embedding_model if spec else "",
                    "embedding_backend": spec.embedding_backend if spec else "",
                    "tenants": str(bool(spec and spec.tenants)).lower(),
                },
            )
            points.add_metric([alias], store.count(collection))
            storage.add_metric([alias], storage_of(alias))
            manifest = manifest_of(alias)
            if manifest is None:
                continue
            try:
                _add_manifest(alias, manifest, documents, versions, scores)
                _add_runs(
                    alias,
                    self.run_totals.figures(alias, manifest),
                    runs,
                    outcomes,
                    chunks,
                    throughput,
                    (last_success, lag),
                    {"cpu_seconds": cpu, "tokens_embedded": tokens, "estimated_cost": cost},
                )
            finally:
                manifest.close()
        yield from (info, points, documents, versions, scores, storage)
        yield from (runs, outcomes, chunks, throughput, last_success, lag, cpu, tokens, cost)


def _add_manifest(alias: str, manifest: Any, documents: Any, versions: Any, scores: Any) -> None:
    by_status: dict[str, int] = {}
    for record in manifest.all_documents():
        by_status[record.status] = by_status.get(record.status, 0) + 1
    for status, count in by_status.items():
        documents.add_metric([alias, status], count)
    for name, record in manifest.versions().items():
        versions.add_metric([alias, name, record.state], 1)
        for mode, metrics in (record.scores or {}).items():
            for metric, value in (metrics or {}).items():
                if isinstance(value, int | float):
                    scores.add_metric([alias, name, mode, metric], float(value))


def _add_runs(
    alias: str,
    figures: SourceFigures,
    runs: Any,
    outcomes: Any,
    chunks: Any,
    throughput: Any,
    latest: tuple[Any, Any],
    costs: dict[str, Any],
) -> None:
    """`latest`: the last-success and live-lag families; `costs`: a counter family per field
    of the reports' `cost` (cpu_seconds, ...)."""
    last_success, lag = latest
    families = {"runs": runs, "documents": outcomes, "chunks": chunks}
    for (family, source, *label), value in figures.counted.items():
        (families.get(family) or costs[family]).add_metric([alias, source, *label], value)
    for source, rate in figures.embed_rate.items():
        throughput.add_metric([alias, source], rate)
    for source, finished in figures.last_success.items():
        last_success.add_metric([alias, source], finished)
    for source, seconds in figures.lag.items():
        lag.add_metric([alias, source], seconds)
