"""The plain types that cross the contracts: collection specs, points, filters, search
requests and results, and the errors stores raise instead of their own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from config.model_names import Quantization
from index.contracts.vectors import Bm25Params, SparseVector

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
SearchMode = Literal["hybrid", "dense", "bm25"]


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
VectorQuantization = Quantization
"""int8: each dense vector also kept as int8, searched first and rescored."""


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
