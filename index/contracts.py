"""The index's contracts (`VectorStore`, `Embedder`, `SparseEncoder`, `Reranker`), their errors,
and the plain types that cross them.

Searcher, writer, pipelines and the API depend on these Protocols, never on a backend or a model
class: the composition root picks the implementations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

from chunking.types import Chunk, Tokenizer
from config.model_names import Backend, Quantization

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
SearchMode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class Bm25Params:
    k1: float = 1.2
    b: float = 0.75
    language: str = "english"
    stopwords: str = "lucene"
    avg_doc_length: float = 100.0
    neighbours: int = 0
    """Chunks on each side whose terms a chunk's vector also counts (0: the chunk alone, as
    collections made before this existed)."""
    neighbour_weight: float = 0.5
    """What one occurrence of a term in a neighbouring chunk counts for."""


BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "openvino")
QUANTIZATIONS: tuple[Quantization, ...] = ("none", "int8")


@dataclass(frozen=True)
class InferenceBackend:
    """Which runtime runs the transformer, at which precision. int8 is dynamic quantisation:
    int8 weights, activations quantised per batch at run time, no calibration data."""

    name: Backend = "torch"
    quantization: Quantization = "none"

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"unknown backend '{self.name}' (one of {', '.join(BACKENDS)})")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization '{self.quantization}' (none or int8)")
        if self.name == "torch" and self.quantization != "none":
            raise ValueError("int8 runs on the onnx or openvino backend, not on torch")

    @property
    def label(self) -> str:
        """How a collection records it: `torch`, `onnx`, `onnx-int8`, `openvino-int8`."""
        return self.name if self.quantization == "none" else f"{self.name}-{self.quantization}"

    @classmethod
    def from_label(cls, label: str) -> InferenceBackend:
        name, _, quantization = label.partition("-")
        return cls(cast(Backend, name), cast(Quantization, quantization or "none"))


TORCH = InferenceBackend()


class StoreError(RuntimeError):
    """A vector-store failure a caller acts on; both backends raise these, never their own."""


class IndexLockedError(StoreError):
    """Another process holds the index (the embedded engine's shard is open there)."""


class CollectionNotFoundError(StoreError, LookupError):
    """The collection does not exist (never created, or dropped by retention)."""


class IndexNotFoundError(LookupError):
    """The alias names no collection yet (nothing was ingested)."""


# Payload fields with an index: every filter the API offers is on one of these.
KEYWORD_FIELDS = (
    "doc_id",
    "doc_version",
    "source",
    "uri",
    "public_uri",
    "filetype",
    "element_types",
)
INTEGER_FIELDS = ("pages", "ordinal")
TENANT_FIELD = "tenant"
"""A keyword field with Qdrant's tenant index (`is_tenant`): points of one tenant are stored
together, and every search of a tenant's key is confined to it by the searcher."""


FusionMethod = Literal["rrf", "dbsf", "minmax"]
VectorQuantization = Literal["none", "int8"]


@dataclass(frozen=True)
class QuantizedSearch:
    """How a dense search reads a collection with int8 vectors: candidates are found on the
    int8 copies, and with `rescore` the best `oversampling` x limit of them are scored again
    on the original float32 vectors (read from disk), which restores their exact scores."""

    rescore: bool = True
    oversampling: float = 2.0


@dataclass(frozen=True)
class HybridOptions:
    """How hybrid search fuses and reranks. A `None` field takes the collection's tuned value,
    else the server's default (`IndexSearcher.resolve`)."""

    method: FusionMethod | None = None
    rrf_k: int | None = None
    weights: tuple[float, float] | None = None
    """(dense, bm25)"""
    candidate_pool: int | None = None
    """Candidates each list contributes to fusion."""
    rerank_blend: float | None = None
    """Weight of the cross-encoder's score against the first stage's, 0..1."""

    def over(self, base: HybridOptions) -> HybridOptions:
        """These options, with `base`'s value wherever one is unset."""
        mine, theirs = asdict(self), asdict(base)
        return HybridOptions(**{k: theirs[k] if v is None else v for k, v in mine.items()})

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> HybridOptions:
        values = dict(data)
        if values.get("weights") is not None:
            values["weights"] = tuple(values["weights"])
        return cls(**values)


@dataclass(frozen=True)
class RetrievalTuning:
    """Hybrid options `sluice tune` chose for one collection version from its golden set, and
    the cross-validated evidence for them; requests still override any of them."""

    options: HybridOptions
    tuned_at: str
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> RetrievalTuning:
        return cls(
            HybridOptions.from_metadata(data["options"]), data["tuned_at"], data.get("evidence", {})
        )


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection was built with; serving needs it to embed queries the same way."""

    name: str
    embedding_model: str
    dimension: int
    bm25: Bm25Params
    distance: str = "cosine"
    created_at: str = ""
    query_prefix: str = ""
    passage_prefix: str = ""
    tuning: RetrievalTuning | None = None
    tenants: bool = False
    """Its points carry a tenant (collections made before tenants do not: every point is
    the default tenant's)."""
    embedding_backend: str = "torch"
    """The runtime and precision that made its vectors (`InferenceBackend.label`); collections
    made before backends existed were made by torch."""
    vector_quantization: VectorQuantization = "none"
    """int8: its dense vectors also kept as int8 in RAM (a quarter of float32), the originals
    on disk for rescoring; collections made before it keep float32 only."""

    @property
    def embedder_key(self) -> tuple[str, str, str, str]:
        """Collections with the same key embed queries alike: they can share one loaded model."""
        return (
            self.embedding_model,
            self.embedding_backend,
            self.query_prefix,
            self.passage_prefix,
        )

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> CollectionSpec:
        values = dict(data)
        values["bm25"] = Bm25Params(**values["bm25"])
        if values.get("tuning"):
            values["tuning"] = RetrievalTuning.from_metadata(values["tuning"])
        return cls(**values)


@dataclass(frozen=True)
class IndexedPoint:
    id: str
    dense: npt.NDArray[np.float32]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoredPoint:
    """A point as read back: everything but its dense vector, which a re-embed replaces."""

    id: str
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class FetchedPoint:
    """A point read by id: its payload and, when asked for, its dense vector."""

    id: str
    payload: dict[str, Any]
    dense: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class MatchAny:
    """`key` equals one of `values` (for a list field: contains one of them)."""

    key: str
    values: Sequence[str | int | float | bool]


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    def tightest(self) -> Range:
        """At most one bound per side: the engines disagree when given two (the embedded one
        keeps only one lower bound), so both backends get the one that decides."""
        gte, gt, lte, lt = self.gte, self.gt, self.lte, self.lt
        if gte is not None and gt is not None:
            gte, gt = (None, gt) if gt >= gte else (gte, None)
        if lte is not None and lt is not None:
            lte, lt = (None, lt) if lt <= lte else (lte, None)
        return Range(self.key, gte=gte, gt=gt, lte=lte, lt=lt)


Condition = MatchAny | Range


@dataclass(frozen=True)
class PayloadFilter:
    """All of `must` and none of `must_not`."""

    must: Sequence[Condition] = ()
    must_not: Sequence[Condition] = ()

    def __bool__(self) -> bool:
        return bool(self.must or self.must_not)


@dataclass(frozen=True)
class SearchRequest:
    mode: SearchMode
    limit: int
    candidate_pool: int
    dense: npt.NDArray[np.float32] | None = None
    sparse: SparseVector | None = None
    filter: PayloadFilter = field(default_factory=PayloadFilter)
    quantized: QuantizedSearch | None = None
    """Set by the searcher for a collection with quantised vectors; None: no such params."""
    candidate_payloads: bool = True
    """Whether hybrid candidates come with their payloads. Without, the searcher fetches the
    payloads of the fused hits only: ~10 of 400 points at the default pool, where reading cold
    payloads from disk is what a large index's slowest searches wait for."""


@dataclass(frozen=True)
class ScoredPoint:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass
class SearchResult:
    """The final ranking and, in hybrid mode, each candidate list it is fused from.

    A store answers a hybrid request with the two candidate lists only (`hits` empty);
    `IndexSearcher` fuses them.
    """

    hits: list[ScoredPoint]
    dense: list[ScoredPoint] = field(default_factory=list)
    sparse: list[ScoredPoint] = field(default_factory=list)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as columns, not as 400 dataclass instances: a hybrid search crosses the
        shard channel 3x faster (1.6 -> 0.5 ms per 2 x 200 candidates), much of it in the
        owner's process under the GIL."""
        return (_search_result, (_columns(self.hits), _columns(self.dense), _columns(self.sparse)))


_Columns = tuple[list[str], list[float], list[dict[str, Any]]]


def _columns(points: list[ScoredPoint]) -> _Columns:
    return [p.id for p in points], [p.score for p in points], [p.payload for p in points]


def _points(columns: _Columns) -> list[ScoredPoint]:
    return [ScoredPoint(*point) for point in zip(*columns, strict=True)]


def _search_result(hits: _Columns, dense: _Columns, sparse: _Columns) -> SearchResult:
    return SearchResult(_points(hits), _points(dense), _points(sparse))


class VectorStore(Protocol):
    """One interface over the embedded engine and a Qdrant server.

    Logical indexes are aliases over versioned collections (`docs` -> `docs__v1`).
    """

    def create_collection(self, spec: CollectionSpec) -> None: ...

    def drop_collection(self, name: str) -> None: ...

    def list_collections(self) -> list[str]: ...

    def collection_spec(self, name: str) -> CollectionSpec | None: ...

    def record_tuning(self, name: str, tuning: RetrievalTuning | None) -> None:
        """Stores (or clears) the collection's tuned hybrid options in its spec."""
        ...

    def resolve_alias(self, alias: str) -> str | None: ...

    def set_alias(self, alias: str, collection: str) -> None: ...

    def list_aliases(self) -> dict[str, str]: ...

    def upsert(self, collection: str, points: Sequence[IndexedPoint]) -> None: ...

    def delete(self, collection: str, filter: PayloadFilter) -> None: ...

    def count(self, collection: str, filter: PayloadFilter | None = None) -> int: ...

    def distinct_values(self, collection: str, key: str, limit: int = 1_000_000) -> int: ...

    def scroll(
        self, collection: str, fields: Sequence[str], page_size: int = 1024
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and the named payload fields, in pages."""
        ...

    def read_points(self, collection: str, page_size: int = 256) -> Iterator[list[StoredPoint]]:
        """Every point with its whole payload and BM25 vector, a page at a time."""
        ...

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection holds (a page of ids at a time: nothing is loaded
        beyond them)."""
        ...

    def fetch(self, collection: str, ids: Sequence[str], dense: bool = False) -> list[FetchedPoint]:
        """The points of `ids` the collection holds (others are left out), in no set order;
        with their dense vectors when `dense`."""
        ...

    def search(self, collection: str, request: SearchRequest) -> SearchResult: ...

    def write_stamp(self, collection: str) -> str:
        """A token that changes with every write to the collection (points, deletes, its
        tuning), whichever process wrote: what a cache of its answers is keyed by."""
        ...

    def close(self) -> None: ...


class Embedder(Tokenizer, Protocol):
    """Dense embeddings for one model and its query/passage prefixes; also the tokenizer
    chunking bounds chunks with. `SentenceTransformerEmbedder` is the implementation."""

    model_id: str
    backend: InferenceBackend
    """The runtime and precision of its model: vectors differ between them."""

    @property
    def dimension(self) -> int: ...

    @property
    def query_prefix(self) -> str: ...

    @property
    def passage_prefix(self) -> str: ...

    @property
    def cache_key(self) -> str:
        """What an embedding depends on besides the text (model, its files, passage prefix)."""
        ...

    def warm_up(self) -> None:
        """Loads the model; a model that cannot load fails here."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...

    def embed_query(self, text: str) -> npt.NDArray[np.float32]: ...


class SparseEncoder(Protocol):
    """Sparse (BM25) vectors of a collection's parameters. `Bm25Encoder` is the implementation."""

    params: Bm25Params

    def tokenize(self, text: str) -> list[str]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_chunks(self, chunks: Sequence[Chunk]) -> list[SparseVector]: ...

    def encode_query(self, text: str) -> SparseVector: ...


class RerankSkipped(Exception):
    """Reranking did not run or did not finish; the message is the `degraded` reason."""


@dataclass(frozen=True)
class RerankedPoint:
    point: ScoredPoint
    rerank_score: float
    final_score: float


class Reranker(Protocol):
    """Reorders first-stage candidates; raises `RerankSkipped` rather than run over its budget.
    `CrossEncoderReranker` is the implementation."""

    model_id: str

    def warm_up(self) -> None: ...

    def warm_up_in_background(self) -> None: ...

    def rerank(
        self, query: str, candidates: Sequence[ScoredPoint], blend: float | None = None
    ) -> list[RerankedPoint]:
        """`blend`: the rerank score's weight against the first stage's (None: the model's
        configured blend)."""
        ...
