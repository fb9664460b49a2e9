"""The one settings model shared by every package.

Values come from (highest first) explicit arguments, `SLUICE_*` environment variables, a TOML
config file named by `SLUICE_CONFIG_FILE`, then the defaults below. Only entry points (the CLI,
`create_app`, flows) build a `Settings`; library classes receive plain values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.api_server_settings import ApiServerSettings
from config.index_store_settings import IndexStoreSettings
from config.model_names import BackendSetting, Quantization, valid_model_name
from config.sources import SourceConfig
from config.state_settings import StateSettings

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingPrompts(BaseModel):
    """Prefixes a model was trained with (e5: "query: " and "passage: ")."""

    query: str = ""
    passage: str = ""


ModelName = Annotated[str, AfterValidator(valid_model_name)]


class Settings(ApiServerSettings, IndexStoreSettings, StateSettings, BaseSettings):
    """Every setting; those of the API server process are in `ApiServerSettings`, those of
    where the index lives in `IndexStoreSettings`, where the state lives in `StateSettings`."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="forbid")

    data_dir: Path = Field(
        default=Path(".sluice"),
        description="Everything the embedded deployment writes (Qdrant shards, Prefect home).",
    )
    index_name: str = Field(default="docs", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")

    prefect_server_idle_minutes: float = Field(
        default=60,
        ge=0,
        description="Without PREFECT_API_URL, commands record their runs on a Prefect server of "
        "the data dir's own (loopback, started on first use) that stops after this long "
        "without a request once no command using it runs (`sluice server stop` stops it now); "
        "0: a temporary server per command, as Prefect does by itself.",
    )

    embedding_model: ModelName = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model id or local path; the default ships in a package.",
    )
    embedding_prompts: dict[str, EmbeddingPrompts] = Field(
        default_factory=dict,
        description="Per model id or path: its query and passage prefixes. A model not listed "
        "uses the prompts it declares, else its family's (e5), else none.",
    )
    embedding_device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    embedding_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Texts per batch where batches count texts."
    )
    embedding_batch_tokens: int = Field(
        default=16384,
        ge=0,
        description="Documents are embedded in batches of at most this many tokens with "
        "padding, longest first (short texts in large batches, long in small); 0: batches of "
        "embedding_batch_size texts.",
    )
    embedding_backend: BackendSetting = Field(
        default="auto",
        description="Runtime of the embedding model: torch, or onnx / openvino (CPU, exported "
        "from the local weights on first use); auto: torch on a GPU (fp16), else openvino. It "
        "applies to new indexes and re-embeds: an index keeps the backend it was built with "
        "until `sluice reembed` changes it.",
    )
    embedding_quantization: Quantization = Field(
        default="int8",
        description="int8: dynamically quantised weights (onnx, openvino); the default by "
        "measurement (docs/inference-backends.md): hybrid nDCG@10 within 0.001 of torch on both "
        "BEIR sets, 1.85x the embedding throughput. Ignored by torch unless set.",
    )

    chunker: Literal["title", "document"] = Field(
        default="title",
        description="title: sections packed to the model's window; document: one chunk per "
        "document (short records; the embedder truncates, BM25 sees it all).",
    )
    chunk_context: bool = Field(
        default=True, description="Index each chunk with its title and heading path."
    )
    chunk_max_tokens: int | None = Field(
        default=None, ge=16, description="Chunk size bound; unset means the embedder's own limit."
    )
    chunk_overlap_tokens: int = Field(default=32, ge=0)

    # BM25 and hybrid defaults: chosen by leaving one collection out (docs/retrieval-quality.md).
    bm25_k1: float = Field(default=1.5, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    bm25_language: str = "english"
    bm25_stopwords: Literal["lucene", "none"] = "lucene"
    bm25_neighbours: int = Field(
        default=2,
        ge=0,
        le=2,  # chunking.types.MAX_NEIGHBOURS
        description="Chunks on each side whose terms a chunk's BM25 vector also counts.",
    )
    bm25_neighbour_weight: float = Field(
        default=0.5, gt=0, le=1, description="What a term in a neighbouring chunk counts for."
    )

    parse_strategy: Literal["fast", "auto", "ocr_only"] = "fast"
    ocr: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Text of image-only PDF pages and of images by Tesseract: auto (where it is "
        "installed), on (required: ingest refuses to start without it), off.",
    )
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: ["**/.*", "**/.*/**"])

    sources: list[SourceConfig] = Field(
        default_factory=list,
        description="Named sources (`[[sources]]` in the config file), each with a schedule.",
    )
    max_deleted_fraction: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="A listing that lost more than this share of known documents deletes nothing.",
    )
    parse_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Most processes that fetch and parse beside the embedding (started as the "
        "reading needs them: docs/ingestion.md).",
    )
    parse_timeout_s: float = Field(
        default=300,
        ge=0,
        description="CPU seconds one document may take to fetch and parse (its worker's, with "
        "what it started), and a tenth of the wall time; past either its worker is stopped and "
        "the document quarantined (0: no limit).",
    )
    parse_memory_mb: int = Field(
        default=2048,
        ge=0,
        description="Most memory a parse worker (with what it starts, such as OCR) may use for "
        "one document; past it the worker is stopped and the document quarantined (0: no limit).",
    )
    ingest_batch_size: int = Field(
        default=256, ge=1, description="Chunks per embed-and-upsert batch."
    )
    ingest_attempts: int = Field(
        default=3, ge=1, description="Tries per document before quarantine."
    )
    ingest_backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles.")

    model_exports_dir: Path | None = Field(
        default=None,
        description="Folder of the models exported for the onnx and openvino backends; unset: "
        "model-exports in the data dir. Several data dirs may share one, and an image may "
        "ship its exports made at build time (a process that finds its export never loads torch).",
    )
    golden_set: Path | None = Field(
        default=None,
        description="The index's golden queries: a BEIR folder, or a JSONL file of "
        '{"query": ..., "relevant": [file names or BEIR ids]}. Gates a re-embed.',
    )
    gate_mode: Literal["bm25", "dense", "hybrid"] = Field(
        default="hybrid", description="The retrieval mode a re-embed is gated on."
    )
    gate_metric: Literal["ndcg@10", "recall@100", "mrr@10"] = "ndcg@10"
    gate_tolerance: float = Field(
        default=0.01, ge=0, description="How much worse the new version may score and still serve."
    )
    keep_versions: int = Field(
        default=2, ge=1, description="Collection versions kept per index, the serving one included."
    )

    default_top_k: int = Field(default=10, ge=1, le=200)
    candidate_pool: int = Field(default=200, ge=1, le=1000)
    rrf_k: int = Field(default=60, ge=1)
    fusion_method: Literal["rrf", "dbsf", "minmax"] = "minmax"
    fusion_weights: tuple[float, float] = Field(
        default=(1.0, 1.0), description="(dense, bm25) weights of hybrid fusion"
    )

    reranker_model: ModelName | None = Field(
        default=None, description="CrossEncoder id or path; unset means no reranking stage."
    )
    rerank_default: bool = Field(default=False, description="Rerank when a request does not say.")
    rerank_candidates: int = Field(default=30, ge=1, le=500)
    rerank_budget_ms: float = Field(default=2000.0, gt=0)
    rerank_blend: float = Field(
        default=0.7, ge=0, le=1, description="Weight of the rerank score against the first stage."
    )
    rerank_max_length: int | None = Field(
        default=None, ge=16, le=4096, description="Tokens per pair; unset: the model's own."
    )
    rerank_backend: BackendSetting = Field(
        default="auto",
        description="Runtime of the reranker: torch, onnx or openvino; auto: torch on a GPU, "
        "else openvino.",
    )
    rerank_quantization: Quantization = Field(
        default="int8",
        description="int8: dynamically quantised weights (onnx, openvino); the default by "
        "measurement: SciFact hybrid+rerank nDCG@10 within 0.0001 of torch at 0.42x its "
        "latency. Ignored by torch unless set.",
    )

    metrics: bool = Field(
        default=True, description="Serve Prometheus metrics at /metrics (and count for them)."
    )
    tracing: Literal["off", "otlp", "console"] = Field(
        default="off",
        description="OpenTelemetry spans for each request's and run's stages (the tracing "
        "extra); otlp reads the standard OTEL_EXPORTER_OTLP_* variables.",
    )
    query_log: bool = Field(
        default=True,
        description="Record every /retrieve call in Parquet files under the data dir's "
        "query-log/ (docs/observability.md).",
    )
    query_log_text: bool = Field(
        default=True,
        description="Keep each query's text in the query log; false: only a keyed hash of it "
        "(equal queries still group; replay needs the text).",
    )
    query_log_max_mb: float = Field(
        default=512, gt=0, description="The query log's size bound; the oldest files go first."
    )
    query_log_flush_rows: int = Field(
        default=1000, ge=1, description="Records buffered before they are written to a file."
    )
    query_log_flush_s: float = Field(
        default=30, gt=0, description="The longest a record waits in the buffer."
    )
    feedback_exploration: float = Field(
        default=0.0,
        ge=0,
        le=0.5,
        description="Share of /retrieve answers in which two adjacent hits of the first 10 "
        "trade places at random, so that `sluice golden --from-feedback` can measure how much "
        "a hit's position alone draws clicks (docs/feedback.md); 0: never.",
    )
    result_cache_entries: int = Field(
        default=1024,
        ge=0,
        description="Answers kept per API process, keyed by the serving collection version, "
        "its writes, the tenants and the normalised request; 0: no result cache.",
    )
    query_embedding_cache_entries: int = Field(
        default=4096,
        ge=0,
        description="Query vectors kept per API process, keyed by model and normalised query; "
        "0: none.",
    )
    cost_cpu_hour: float = Field(
        default=0.05, ge=0, description="What a CPU core-hour costs, for cost estimates."
    )
    cost_gpu_hour: float = Field(
        default=2.5, ge=0, description="What a GPU-hour costs, for cost estimates."
    )
    cost_storage_gb_month: float = Field(
        default=0.10, ge=0, description="What a GB-month of index storage costs."
    )
    cost_currency: str = Field(default="USD", description="The unit of the cost rates.")
    gate_replay_min_overlap: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Without a golden set, a re-embed serves only if logged queries replayed "
        "on it keep at least this overlap@10 with the serving version's answers.",
    )

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def api_keys_path(self) -> Path:
        return self.data_dir / "api-keys.json"

    @property
    def rate_limits_path(self) -> Path:
        """Each API key's rate-limit bucket, shared by the API processes on this data dir."""
        return self.data_dir / "rate_limits.sqlite"

    @property
    def cursor_secret_path(self) -> Path:
        return self.data_dir / "cursor-secret"

    @property
    def query_log_dir(self) -> Path:
        return self.data_dir / "query-log"

    @property
    def feedback_dir(self) -> Path:
        return self.data_dir / "feedback"

    @property
    def embedding_cache_dir(self) -> Path:
        return self.data_dir / "embedding-cache"

    @field_validator("model_exports_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`SLUICE_MODEL_EXPORTS_DIR=` means the default, not the working directory."""
        return None if value == "" else value

    @property
    def model_exports_path(self) -> Path:
        """Models exported for the onnx and openvino backends, one folder per model's files."""
        return self.model_exports_dir or self.data_dir / "model-exports"

    @model_validator(mode="after")
    def _int8_needs_an_exported_backend(self) -> Settings:
        """int8 asked for on torch is refused; int8 by default means fp32 on torch (and on a
        GPU, where `auto` picks torch), so that SLUICE_EMBEDDING_BACKEND=torch alone is enough
        to go back to torch."""
        for name in ("embedding", "rerank"):
            backend, quantization = (
                getattr(self, f"{name}_{k}") for k in ("backend", "quantization")
            )
            if backend != "torch" or quantization == "none":
                continue
            if f"{name}_quantization" in self.model_fields_set:
                upper = name.upper()
                raise ValueError(
                    f"SLUICE_{upper}_QUANTIZATION={quantization} needs SLUICE_{upper}_BACKEND=onnx "
                    "or openvino (torch runs fp32, or fp16 on a GPU)"
                )
            setattr(self, f"{name}_quantization", "none")
        return self

    def manifest_path(self, index: str | None = None) -> Path:
        return self.data_dir / "manifests" / f"{index or self.index_name}.sqlite"

    def run_lock_path(self, index: str | None = None) -> Path:
        return self.data_dir / "manifests" / f"{index or self.index_name}.lock"

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise KeyError(f"no source named '{name}' (sources: {known})")

    @property
    def prefect_home(self) -> Path:
        return self.data_dir / "prefect"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SLUICE_CONFIG_FILE")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"SLUICE_CONFIG_FILE={config_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)
