"""The body of `POST /retrieve`, as the server validates it: the server's OpenAPI schema is made
from these models, and the client sends them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Tenant = Annotated[
    str,
    Field(
        pattern=TENANT_PATTERN,
        description="whose documents these are: an API key reads only its tenants' documents",
    ),
]

SAFE_INT = 2**53 - 1
"""Integer filter values stay within JSON's safe integers: every client (JavaScript too) reads
the schema's bounds and sends the values exactly, and every backend stores them (int64)."""
MAX_CANDIDATE_POOL = 1000
"""The deepest first-stage lists a request may ask for, and so the deepest ranking a cursor may
page through."""
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}"
"""A cursor as the server writes it: a base64url payload, a dot, a base64url HMAC-SHA256. No
`$`: it means "end, or before a final newline" in Python's `re` (which Python validators use)
and "end" in ECMA and Rust (the server), so with it the dialects would disagree; what follows
the signature is refused by the signature check instead (400)."""
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


def _whole(value: object) -> object:
    """JSON Schema's integers include 5.0; a string or a boolean is never one (strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Keyword = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_unicode)]
# Bounds first, then the validator: so the schema states them as minimum and maximum.
Int64 = Annotated[int, Field(ge=-SAFE_INT, le=SAFE_INT), BeforeValidator(_whole)]
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class IntegerRange(BaseModel):
    """Bounds on an integer field; at least one."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"minProperties": 1}
    )
    # Each bound may be left out, not sent as null: the schema says so, and a client generated
    # from it never sends {"gte": null} as a range.
    gte: Int64 = None  # type: ignore[assignment]
    gt: Int64 = None  # type: ignore[assignment]
    lte: Int64 = None  # type: ignore[assignment]
    lt: Int64 = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _some_bound(self) -> IntegerRange:
        bounds: tuple[int | None, ...] = (self.gte, self.gt, self.lte, self.lt)
        if all(bound is None for bound in bounds):
            raise ValueError("a range needs at least one of gte, gt, lte, lt")
        return self


KeywordMatch = Keyword | Annotated[list[Keyword], Field(min_length=1, max_length=MAX_VALUES)]
IntegerMatch = (
    Int64 | Annotated[list[Int64], Field(min_length=1, max_length=MAX_VALUES)] | IntegerRange
)
Uri = Annotated[
    str,
    Field(min_length=1, max_length=1024, pattern=r"^(file|s3|https?):"),
    AfterValidator(_unicode),
]
SourcePath = Annotated[
    str, Field(min_length=1, max_length=1024, pattern=r"^[^:/][^:]*/"), AfterValidator(_unicode)
]
UriMatch = Uri | Annotated[list[Uri], Field(min_length=1, max_length=MAX_VALUES)]
SourcePathMatch = (
    SourcePath | Annotated[list[SourcePath], Field(min_length=1, max_length=MAX_VALUES)]
)


class MetadataFilters(BaseModel):
    """Conditions on the indexed fields of a chunk: a value, any of a list of values, or (for
    an integer field) a range. Keyword fields take strings, integer fields integers."""

    model_config = _STRICT
    filetype: KeywordMatch | None = Field(default=None, description="e.g. pdf, md, html")
    element_types: KeywordMatch | None = Field(
        default=None, description="unstructured element types in the chunk, e.g. Table"
    )
    doc_version: KeywordMatch | None = None
    uri: UriMatch | None = Field(
        default=None, description="The document by its URI (`file:///…`, `s3://…`, `https://…`)."
    )
    source_path: SourcePathMatch | None = Field(
        default=None,
        description="The document as keys that are not admin see it: `<source>/<path>`.",
    )
    pages: IntegerMatch | None = Field(default=None, description="a page the chunk spans")
    ordinal: IntegerMatch | None = Field(default=None, description="the chunk's place, from 0")


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
    rrf_k: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole)] | None = None
    # "Not both 0" belongs to the list itself: said of the field, it would refuse null too.
    weights: (
        Annotated[
            list[Weight],
            Field(min_length=2, max_length=2, json_schema_extra={"not": {"items": {"const": 0}}}),
        ]
        | None
    ) = Field(
        default=None,
        description="[dense, bm25] weights, each between 0 and 10; at least one above 0",
    )

    @field_validator("weights")
    @classmethod
    def _not_both_zero(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and sum(value) == 0:
            raise ValueError("weights must not both be 0")
        return value


class ExpandRequest(BaseModel):
    """Each hit's neighbouring chunks of the same document version, merged in order (overlap
    removed) into `context_text`, nearest first within `max_tokens`; or its whole section."""

    model_config = _STRICT
    before: Annotated[int, Field(ge=0, le=10), BeforeValidator(_whole)] = 0
    after: Annotated[int, Field(ge=0, le=10), BeforeValidator(_whole)] = 0
    section: bool = Field(
        default=False,
        description="The chunks under the same headings as the hit, instead of before/after.",
    )
    max_tokens: Annotated[int, Field(ge=1, le=8192), BeforeValidator(_whole)] = Field(
        default=1024, description="The context's budget in the embedding model's tokens."
    )


class MmrRequest(BaseModel):
    """Maximal marginal relevance over the final candidates: each next hit maximises
    `(1 - diversity) * relevance - diversity * (max cosine to the hits above it)`, relevance
    being the final score scaled to [0, 1] over the candidates."""

    model_config = _STRICT
    diversity: float = Field(ge=0, le=1, description="0: the ranking as it is; 1: only novelty")
    candidates: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole)] = Field(
        default=50,
        description="How many of the top of the final ranking MMR reorders (capped by the "
        "candidate pool); the hits below them follow in their order.",
    )


# One character outside Unicode White_Space, spelled out: `\S` means a different set in
# each regex dialect (ECMA, Python, Rust), so a client validating against the schema and
# the server would disagree on what is blank (U+0085, U+001C, U+FEFF).
NOT_ONLY_WHITESPACE = r"[^\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class RetrieveRequest(BaseModel):
    """Strict: a number given as a string, or a boolean as a number, is a 422, never coerced."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"query": "How do I configure the index?", "top_k": 5}]},
    )
    query: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4000,
            pattern=NOT_ONLY_WHITESPACE,
            description="Not only whitespace (Unicode White_Space).",
        ),
        AfterValidator(_unicode),
    ]
    top_k: Annotated[int, Field(ge=1, le=200), BeforeValidator(_whole)] | None = None
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    filters: Filters = Field(default_factory=Filters)
    candidate_pool: (
        Annotated[
            int,
            Field(
                ge=1,
                le=MAX_CANDIDATE_POOL,
                description="How deep each first-stage list goes; at least top_k. Unset uses the "
                "index's tuned or default pool; `options` in the answer reports the pool used.",
            ),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
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
    group_by: Literal["doc"] | None = Field(
        default=None,
        description="`doc`: the best documents (top_k of them), each with its best chunks; "
        "grouped after fusion, reranking and MMR.",
    )
    group_size: Annotated[int, Field(ge=1, le=50), BeforeValidator(_whole)] = Field(
        default=3, description="Chunks per document with group_by."
    )
    expand: ExpandRequest | None = None
    mmr: MmrRequest | None = None
    min_score: float | None = Field(
        default=None, description="Only hits whose final `score` is at least this."
    )
    min_relative_score: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Only hits whose `relative_score` (score over the best hit's score) is at "
        "least this: the same scale for every query, mode and fusion.",
    )
    cursor: Annotated[str, Field(max_length=2048, pattern=CURSOR_PATTERN)] | None = Field(
        default=None,
        description="`next_cursor` of the previous page: the next top_k hits (or groups) of the "
        "same ranking. Repeat the request's other fields (only top_k may change). A cursor is "
        "signed by the server: one it did not issue, or one of another request, is a 400 "
        "(`invalid_cursor`); 410 once the index has changed.",
    )
