"""The composition root: the one place that turns `Settings` into Sluice's parts.

Everything below it (`ingest/`, `chunking/`, `index/`, `pipelines/`) takes plain values and
Protocols and never sees `Settings`; the flows, the API, the CLI, benches and tests build what
they need here, so a component is wired the same way wherever it runs.

>>> parts = Components(Settings())
>>> store = parts.store()  # doctest: +SKIP
>>> searcher = parts.searcher(store)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from chunking.document_chunker import DocumentChunker
from chunking.title_chunker import TitleChunker
from chunking.types import Chunker
from config.runtime import data_dir_id
from config.settings import Settings
from config.sources import DEFAULT_TENANT, LocalFolderConfig, SourceConfig
from index.contracts import (
    Bm25Params,
    CollectionSpec,
    Embedder,
    HybridOptions,
    InferenceBackend,
    QuantizedSearch,
    Reranker,
    VectorStore,
)
from index.feedback import FEEDBACK_SCHEMA, FeedbackEvents
from index.models.catalog import canonical_model_id
from index.models.device import choose_backend
from index.models.embedder import SentenceTransformerEmbedder
from index.models.reranker import CrossEncoderReranker
from index.query_log import QueryLog
from index.query_log_index import QueryLogIndex
from index.search.searcher import IndexSearcher
from index.store.cluster import ClusterLayout
from index.store.factory import open_vector_store
from index.write.embedding_cache import EmbeddingCache
from index.write.target import IndexTarget
from ingest.fingerprint import ChunkShaping
from ingest.manifest import Manifest
from ingest.sources.build import build_source
from ingest.types import DocumentSource, SourceItem
from ingest.unstructured_parser import UnstructuredParser
from pipelines.cost import CostRates, StorageEstimate, estimate_storage
from pipelines.document_stream import ReadBudget
from pipelines.gate import GatePolicy
from pipelines.ingest_sync import IngestParts, SyncOptions
from pipelines.versioned_index import VersionedIndex
from state.database import STATE_WAIT_S, StateDatabase, Tree, open_state
from state.run_lock import RunLock


class Components:
    """Builds each part from one `Settings`; cheap to create, holds no open resources."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def index_name(self) -> str:
        return self.settings.index_name

    def deployment_id(self) -> str:
        """Which deployment this is: as named (`deployment_id`), else the Qdrant server's URL, or
        for the embedded engine an id made once per data dir. The API reports it, so a client
        can tell which data it asked."""
        settings = self.settings
        return settings.deployment_id or settings.qdrant_url or data_dir_id(settings.data_dir)

    # -- storage ---------------------------------------------------------------------------
    def store(self) -> VectorStore:
        """A Qdrant server when `qdrant_url` is set, else the embedded engine in the data dir."""
        settings = self.settings
        key = settings.qdrant_api_key
        layout = ClusterLayout(
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
            tenant_shards=tuple(settings.qdrant_tenant_shards),
        )
        return open_vector_store(
            settings.qdrant_path,
            settings.qdrant_url,
            key.get_secret_value() if key else None,
            settings.owner_timeout_s,
            layout,
        )

    # -- state (docs/scaling.md: SQLite files by default, PostgreSQL with state_url) ----------
    def state(self, tree: Tree, index: str | None = None) -> StateDatabase:
        """An index's manifest database (`tree="index"`), or what all indexes share."""
        settings = self.settings
        url = settings.state_url.get_secret_value() if settings.state_url else None
        if tree == "index":
            return open_state(url, settings.manifest_path(index), tree, index or self.index_name)
        # Rate buckets lost in a crash only forget recent requests: no fsync per request.
        return open_state(url, settings.rate_limits_path, tree, None, False, STATE_WAIT_S)

    def has_manifest(self, index: str | None = None) -> bool:
        """Whether the index has a manifest to read, without making one: on PostgreSQL the
        schema is made on first use, and an empty one reads as nothing."""
        return self.settings.state_url is not None or self.settings.manifest_path(index).exists()

    def manifest(self, index: str | None = None) -> Manifest:
        return Manifest(self.state("index", index))

    def run_lock(self, wait_s: float = 0.0) -> RunLock:
        """The index's run lock: one ingest run or version switch at a time."""
        return self._lock("run", wait_s)

    def reembed_lock(self) -> RunLock:
        """One re-embed per index at a time (ingest runs go on; they take the run lock)."""
        return self._lock("reembed", activity="re-embed of")

    def _lock(self, name: str, wait_s: float = 0.0, activity: str | None = None) -> RunLock:
        """A file lock in the data dir, or with state in PostgreSQL an advisory lock there, so
        workers on other machines are excluded too."""
        if self.settings.state_url is not None:
            db = self.state("index")
            return RunLock.in_database(db, name, self.index_name, wait_s, activity)
        path = self.settings.run_lock_path()
        if name != "run":
            path = path.with_suffix(f".{name}.lock")
        return RunLock.on_file(path, self.index_name, wait_s, activity)

    @contextmanager
    def versioned_index(self, store: VectorStore | None = None) -> Iterator[VersionedIndex]:
        """The index's versions with what re-embed and rollback need; `store`: one the caller
        holds open (a serving process), else one opened and closed here."""
        own_store = store is None
        opened = store or self.store()
        manifest = self.manifest()
        try:
            yield VersionedIndex(
                store=opened,
                manifest=manifest,
                alias=self.index_name,
                run_lock=self.run_lock,
                embedder_for=self.embedder_for,
                cache_for=self.embedding_cache,
                vector_quantization=self.settings.vector_quantization,
            )
        finally:
            manifest.close()
            if own_store:
                opened.close()

    # -- models ----------------------------------------------------------------------------
    def embedder(self, model: str | None = None) -> Embedder:
        """An embedder for a new collection: the model's prefixes from settings, else its own."""
        model_id = canonical_model_id(model or self.settings.embedding_model)
        configured = self.settings.embedding_prompts.items()
        prompts = {canonical_model_id(k): v for k, v in configured}.get(model_id)
        backend = choose_backend(
            self.settings.embedding_backend,
            self.settings.embedding_quantization,
            self.settings.embedding_device,
        )
        return self._embedder(
            model_id,
            backend,
            prompts.query if prompts else None,
            prompts.passage if prompts else None,
        )

    def embedder_for(self, spec: CollectionSpec) -> Embedder:
        """An embedder that makes vectors the way an existing collection's were made."""
        backend = InferenceBackend.from_label(spec.embedding_backend)
        return self._embedder(spec.embedding_model, backend, spec.query_prefix, spec.passage_prefix)

    def _embedder(
        self,
        model_id: str,
        backend: InferenceBackend,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> Embedder:
        """`None` prefixes: the model's own (its declared prompts or its family's)."""
        return SentenceTransformerEmbedder(
            model_id,
            self.settings.embedding_device,
            self.settings.embedding_batch_size,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            batch_tokens=self.settings.embedding_batch_tokens or None,
            backend=backend,
            exports_dir=self.settings.model_exports_path,
        )

    def index_embedder(self, store: VectorStore) -> Embedder:
        """What writes into the index embed with: the model of the collection it serves (a
        re-embed changes it), or the configured model when the index is new."""
        name = store.resolve_alias(self.index_name)
        spec = store.collection_spec(name) if name else None
        return self.embedder_for(spec) if spec else self.embedder()

    def embedding_cache(self, embedder: Embedder) -> EmbeddingCache:
        return EmbeddingCache(self.settings.embedding_cache_dir, embedder.cache_key)

    def bm25_params(self) -> Bm25Params:
        return Bm25Params(
            k1=self.settings.bm25_k1,
            b=self.settings.bm25_b,
            language=self.settings.bm25_language,
            stopwords=self.settings.bm25_stopwords,
            neighbours=self.settings.bm25_neighbours,
            neighbour_weight=self.settings.bm25_neighbour_weight,
        )

    def reranker(self, load_in_background: bool = False) -> Reranker | None:
        """`load_in_background`: for a service, which skips reranking while the model loads
        rather than hold a request for the load."""
        if not self.settings.reranker_model:
            return None
        return CrossEncoderReranker(
            self.settings.reranker_model,
            self.settings.embedding_device,
            max_length=self.settings.rerank_max_length,
            budget_ms=self.settings.rerank_budget_ms,
            blend_alpha=self.settings.rerank_blend,
            load_in_background=load_in_background,
            backend=choose_backend(
                self.settings.rerank_backend,
                self.settings.rerank_quantization,
                self.settings.embedding_device,
            ),
            exports_dir=self.settings.model_exports_path,
        )

    def hybrid_defaults(self) -> HybridOptions:
        """Complete hybrid options from settings, for collections nobody tuned."""
        s = self.settings
        return HybridOptions(
            s.fusion_method, s.rrf_k, s.fusion_weights, s.candidate_pool, s.rerank_blend
        )

    def searcher(
        self,
        store: VectorStore,
        embedder_for: Callable[[CollectionSpec], Embedder] | None = None,
        reranker: Reranker | None = None,
        cached: bool = False,
    ) -> IndexSearcher:
        """A searcher with the configured reranker (or `reranker`); `embedder_for`: how a
        collection's queries are embedded (the API keeps its loaded models), by default an
        embedder of the collection's own model, loaded once per model for this searcher.
        `cached`: with the configured result and query-vector caches (a server's; a one-off
        search gains nothing from them)."""
        s = self.settings
        loaded: dict[tuple[str, ...], Embedder] = {}

        def own_model(spec: CollectionSpec) -> Embedder:
            if spec.embedder_key not in loaded:
                loaded[spec.embedder_key] = self.embedder_for(spec)
            return loaded[spec.embedder_key]

        return IndexSearcher(
            store,
            embedder_for or own_model,
            reranker or self.reranker(),
            s.rerank_candidates,
            self.hybrid_defaults(),
            result_cache_entries=s.result_cache_entries if cached else 0,
            query_vector_cache_entries=s.query_embedding_cache_entries if cached else 0,
            quantized_search=self.quantized_search(),
        )

    def quantized_search(self) -> QuantizedSearch:
        """How dense searches read a collection built with int8 vectors."""
        s = self.settings
        return QuantizedSearch(s.vector_quantization_rescore, s.vector_quantization_oversampling)

    def query_log(self) -> QueryLog | None:
        s = self.settings
        if not s.query_log:
            return None
        return QueryLog(
            s.query_log_dir,
            keep_text=s.query_log_text,
            max_bytes=int(s.query_log_max_mb * 2**20),
            flush_rows=s.query_log_flush_rows,
            flush_s=s.query_log_flush_s,
            index=QueryLogIndex(self.state("shared")),
        )

    def feedback_log(self) -> tuple[QueryLog, FeedbackEvents] | None:
        """`POST /feedback`'s store, beside the query log: none without it (feedback is
        checked against the answers it logs)."""
        s = self.settings
        if not s.query_log:
            return None
        log = QueryLog(s.feedback_dir, max_bytes=2**30, flush_s=s.query_log_flush_s,
                       flush_rows=s.query_log_flush_rows, schema=FEEDBACK_SCHEMA,
                       name="feedback log")  # fmt: skip
        return log, FeedbackEvents(self.state("shared"))

    def storage(self, store: VectorStore, alias: str) -> StorageEstimate:
        """What an index's kept versions take and cost a month: measured on disk on the
        embedded engine (its shard folders), estimated from the points on a Qdrant server."""
        shard_root = None if self.settings.qdrant_url else self.settings.qdrant_path
        return estimate_storage(store, alias, self.cost_rates(), shard_root)

    def cost_rates(self) -> CostRates:
        s = self.settings
        return CostRates(s.cost_cpu_hour, s.cost_gpu_hour, s.cost_storage_gb_month, s.cost_currency)

    def gate_policy(self) -> GatePolicy:
        s = self.settings
        return GatePolicy(s.gate_mode, s.gate_metric, s.gate_tolerance, self.hybrid_defaults())

    # -- ingest ----------------------------------------------------------------------------
    def source(self, config: SourceConfig) -> DocumentSource:
        return build_source(config)

    def folder_source(self, path: Path, tenant: str | None = None) -> LocalFolderConfig:
        """An ad-hoc folder source, named by its location, with the global include/exclude."""
        return LocalFolderConfig(
            name=path.resolve().as_uri(),
            path=path,
            include=self.settings.include,
            exclude=self.settings.exclude,
            tenant=tenant or DEFAULT_TENANT,
        )

    def parser(self) -> UnstructuredParser:
        return UnstructuredParser(strategy=self.settings.parse_strategy, ocr=self.settings.ocr)

    def chunker(self, embedder: Embedder) -> Chunker:
        if self.settings.chunker == "document":
            return DocumentChunker(embedder)
        return TitleChunker(
            embedder,
            max_tokens=self.settings.chunk_max_tokens,
            overlap_tokens=self.settings.chunk_overlap_tokens,
            context=self.settings.chunk_context,
        )

    def chunk_shaping(self) -> ChunkShaping:
        """What a document's config fingerprint is made of (`ingest/fingerprint.py`)."""
        s = self.settings
        return ChunkShaping(
            s.parse_strategy,
            s.chunker,
            s.chunk_context,
            s.chunk_max_tokens,
            s.chunk_overlap_tokens,
            s.ocr,
        )

    def config_fingerprint(self, item: SourceItem) -> str:
        return self.chunk_shaping().of(item)

    def index_target(
        self, store: VectorStore, embedder: Embedder, cache: EmbeddingCache | None
    ) -> IndexTarget:
        """Where ingest writes: the configured index, created with the configured BM25
        parameters and vector storage on its first write."""
        return IndexTarget(
            store,
            self.index_name,
            embedder,
            self.bm25_params(),
            cache,
            self.settings.vector_quantization,
            lambda: self._lock("create", wait_s=600, activity="creation of the collection of"),
        )

    def ingest_parts(
        self, store: VectorStore, embedder: Embedder | None = None, dry_run: bool = False
    ) -> IngestParts:
        """Parser, chunker and target of an ingest run; a dry run gets no embedding cache."""
        embedder = embedder or self.index_embedder(store)
        return IngestParts(
            parser=self.parser(),
            chunker=self.chunker(embedder),
            target=self.index_target(
                store, embedder, None if dry_run else self.embedding_cache(embedder)
            ),
            config_fingerprint=self.config_fingerprint,
        )

    def sync_options(self, dry_run: bool = False) -> SyncOptions:
        s = self.settings
        return SyncOptions(
            dry_run=dry_run,
            max_deleted_fraction=s.max_deleted_fraction,
            parse_workers=s.parse_workers,
            read_budget=ReadBudget(s.parse_timeout_s, s.parse_memory_mb),
            attempts=s.ingest_attempts,
            backoff_s=s.ingest_backoff_s,
            batch_size=s.ingest_batch_size,
        )
