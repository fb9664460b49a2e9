"""Request and response models of the API; the OpenAPI schema at /docs comes from these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from config.sources import Tenant

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_VALUES = 100
"""Values one metadata condition may list; `doc_ids` may list 1,000 (and no metadata field is
another way to name documents), so no request holds more than ~1,800 values in all."""


def _unicode(value: str) -> str:
    """JSON can carry a lone surrogate (`"\\ud800"`), which no index can store or match."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate)") from None
    return value


Keyword = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_unicode)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class IntegerRange(BaseModel):
    """Bounds on an integer field; at least one."""

    model_config = _STRICT
    gte: Int64 | None = None
    gt: Int64 | None = None
    lte: Int64 | None = None
    lt: Int64 | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> IntegerRange:
        if (self.gte, self.gt, self.lte, self.lt) == (None, None, None, None):
            raise ValueError("a range needs at least one of gte, gt, lte, lt")
        return self


KeywordMatch = Keyword | Annotated[list[Keyword], Field(min_length=1, max_length=MAX_VALUES)]
IntegerMatch = (
    Int64 | Annotated[list[Int64], Field(min_length=1, max_length=MAX_VALUES)] | IntegerRange
)
SCHEMES = ("file:", "s3:", "http:", "https:")


class MetadataFilters(BaseModel):
    """Conditions on the indexed fields of a chunk: a value, any of a list of values, or (for
    an integer field) a range. Keyword fields take strings, integer fields integers."""

    model_config = _STRICT
    filetype: KeywordMatch | None = Field(default=None, description="e.g. pdf, md, html")
    element_types: KeywordMatch | None = Field(
        default=None, description="unstructured element types in the chunk, e.g. Table"
    )
    doc_version: KeywordMatch | None = None
    uri: KeywordMatch | None = Field(
        default=None,
        description="The document: its URI (`file:///…`, `s3://…`, `https://…`), or as keys "
        "that are not admin see it, `<source>/<path>`; all values of one request in one form.",
    )
    pages: IntegerMatch | None = Field(default=None, description="a page the chunk spans")
    ordinal: IntegerMatch | None = Field(default=None, description="the chunk's place, from 0")

    @field_validator("uri")
    @classmethod
    def _one_form(cls, value: str | list[str] | None) -> str | list[str] | None:
        values = [value] if isinstance(value, str) else value or []
        if len({v.startswith(SCHEMES) for v in values}) > 1:
            raise ValueError("give every uri as a URI, or every one as <source>/<path>")
        return value


class Filters(BaseModel):
    """All given conditions must hold, e.g.
    `{"sources": ["handbook"], "metadata": {"filetype": ["pdf"], "pages": {"gte": 3}}}`."""

    model_config = _STRICT
    doc_ids: Annotated[list[Keyword], Field(min_length=1, max_length=1000)] | None = None
    sources: Annotated[list[Keyword], Field(min_length=1, max_length=MAX_VALUES)] | None = None
    tenants: Annotated[list[Tenant], Field(min_length=1, max_length=MAX_VALUES)] | None = Field(
        default=None,
        description="Only these tenants' documents; each must be one the API key grants "
        "(403 otherwise). Unset: every tenant the key grants.",
    )
    metadata: MetadataFilters = Field(default_factory=MetadataFilters)


Weight = Annotated[float, Field(ge=0, le=10)]


class FusionRequest(BaseModel):
    """How hybrid mode fuses the dense and BM25 candidates; unset fields use the collection's tuned
    options, else the server defaults."""

    model_config = _STRICT
    method: Literal["rrf", "dbsf", "minmax"] | None = None
    rrf_k: int | None = Field(default=None, ge=1, le=1000)
    weights: Annotated[list[Weight], Field(min_length=2, max_length=2)] | None = Field(
        default=None,
        description="[dense, bm25] weights, each between 0 and 10; at least one above 0",
    )

    @field_validator("weights")
    @classmethod
    def _not_both_zero(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and sum(value) == 0:
            raise ValueError("weights must not both be 0")
        return value


class RetrieveRequest(BaseModel):
    """Strict: a number given as a string, or a boolean as a number, is a 422, never coerced."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"query": "How do I configure the index?", "top_k": 5}]},
    )
    query: Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_unicode)]
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
