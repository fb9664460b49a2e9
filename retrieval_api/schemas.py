"""Request and response models of the API; the OpenAPI schema at /docs comes from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scalar = str | int | float | bool
_FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$"
_UNFILTERABLE = frozenset({"text"})


class RangeFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


class Filters(BaseModel):
    """All given conditions must hold. `metadata` matches payload fields: a value, any of a
    list of values, or a numeric range, e.g. `{"filetype": ["pdf"], "pages": {"gte": 3}}`."""

    model_config = ConfigDict(extra="forbid")
    doc_ids: list[str] | None = Field(default=None, max_length=1000)
    sources: list[str] | None = Field(default=None, max_length=100)
    tenants: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Only these tenants' documents; each must be one the API key grants "
        "(403 otherwise). Unset: every tenant the key grants.",
    )
    metadata: dict[str, Scalar | list[Scalar] | RangeFilter] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _known_shape(
        cls, value: dict[str, Scalar | list[Scalar] | RangeFilter]
    ) -> dict[str, Scalar | list[Scalar] | RangeFilter]:
        import re

        for key, condition in value.items():
            if not re.match(_FIELD_NAME, key) or key in _UNFILTERABLE:
                raise ValueError(f"cannot filter on field '{key}'")
            if isinstance(condition, list) and not condition:
                raise ValueError(f"filter on '{key}' has an empty list of values")
        return value


class FusionRequest(BaseModel):
    """How hybrid mode fuses the dense and BM25 candidates; unset fields use the collection's tuned
    options, else the server defaults."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["rrf", "dbsf", "minmax"] | None = None
    rrf_k: int | None = Field(default=None, ge=1, le=1000)
    weights: tuple[float, float] | None = Field(
        default=None, description="(dense, bm25) weights, each between 0 and 10"
    )

    @field_validator("weights")
    @classmethod
    def _weights_in_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and (not all(0 <= w <= 10 for w in value) or sum(value) == 0):
            raise ValueError("weights must be between 0 and 10 and not both 0")
        return value


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "How do I configure the index?", "top_k": 5}]},
    )
    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=200)
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    filters: Filters = Field(default_factory=Filters)
    candidate_pool: int | None = Field(default=None, ge=1, le=1000)
    fusion: FusionRequest = Field(default_factory=FusionRequest)
    rerank: bool | None = Field(
        default=None, description="Cross-encoder reranking; unset uses the server default."
    )
    rerank_blend: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Weight of the rerank score against the first stage's; unset uses the "
        "collection's tuned value, else the server default.",
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain non-whitespace text")
        return value


class StageScores(BaseModel):
    dense: float | None = None
    dense_rank: int | None = None
    bm25: float | None = None
    bm25_rank: int | None = None
    fused: float | None = None
    fused_rank: int | None = None
    rerank: float | None = None
    rerank_rank: int | None = None


class Hit(BaseModel):
    chunk_id: str
    doc_id: str
    uri: str
    title: str
    text: str
    headings: list[str]
    pages: list[int]
    element_types: list[str]
    char_start: int
    char_end: int
    rank: int
    score: float
    scores: StageScores


class IndexInfo(BaseModel):
    alias: str
    collection: str
    embedding_model: str
    deployment: str = Field(
        description="Which deployment answered: a Qdrant server's URL, or the embedded data "
        "dir's id (its `deployment-id` file)."
    )
    tuned_at: str | None = Field(
        default=None,
        description="When `sluice tune` chose this collection version's hybrid options "
        "(null: the server's defaults apply).",
    )


class AppliedOptions(BaseModel):
    """The hybrid options the search ran with: the request's, else the collection's tuned
    ones, else the server's defaults."""

    method: Literal["rrf", "dbsf", "minmax"]
    rrf_k: int
    weights: tuple[float, float]
    candidate_pool: int
    rerank_blend: float


class RetrieveResponse(BaseModel):
    query: str
    mode: str
    hits: list[Hit]
    index: IndexInfo | None
    timings_ms: dict[str, float]
    degraded: list[str] = Field(default_factory=list)
    options: AppliedOptions | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, object]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
