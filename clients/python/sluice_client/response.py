"""The answers of the API (`/retrieve`, errors, `/ready`), as the server writes them: the
server's OpenAPI schema is made from these models, and the client parses them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class StageScores(BaseModel):
    dense: float | None = None
    dense_rank: int | None = None
    bm25: float | None = None
    bm25_rank: int | None = None
    fused: float | None = None
    fused_rank: int | None = None
    rerank: float | None = None
    rerank_rank: int | None = None
    mmr: float | None = Field(
        default=None, description="The marginal relevance the hit was picked with (MMR)."
    )


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
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="The source's fields of the document, e.g. a database row's "
        "`metadata_columns`; empty where the source gives none.",
    )
    rank: int
    score: float
    relative_score: float = Field(description="`score` over the best hit's score, in (0, 1]")
    scores: StageScores
    highlights: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[start, end) character spans in `text` of the query's terms, matched as "
        "BM25 matches them (lowercased, stemmed, stop words left out).",
    )
    context_text: str | None = Field(
        default=None, description="With `expand`: the hit's text with its neighbours."
    )
    context_highlights: list[tuple[int, int]] | None = Field(
        default=None,
        description="With `expand`: the query's terms' spans in `context_text`, as `highlights`.",
    )
    highlights_note: str | None = Field(
        default=None,
        description="Why `highlights` is empty, where it is: the terms are in the title or "
        "headings (indexed with the text), in the neighbouring chunks, or nowhere (found by "
        "meaning).",
    )


class DocumentGroup(BaseModel):
    doc_id: str
    score: float = Field(description="Its best chunk's final score")
    uri: str
    title: str
    hits: list[Hit]


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


class RetrievalCost(BaseModel):
    cpu_ms: float = Field(description="The process CPU time charged to this call")
    estimated_cost: float = Field(description="cpu_ms at the configured CPU-hour rate")
    currency: str


class RetrieveResponse(BaseModel):
    query: str
    mode: str
    request_id: str | None = Field(
        default=None,
        description="The answer's id, as in its X-Request-ID header: name it in `POST /feedback`.",
    )
    hits: list[Hit]
    index: IndexInfo | None
    timings_ms: dict[str, float]
    degraded: list[str] = Field(default_factory=list)
    options: AppliedOptions | None = None
    cache: Literal["hit", "miss", "off"] = Field(
        default="off",
        description="hit: answered from the result cache (the index has not changed since)",
    )
    cost: RetrievalCost | None = None
    groups: list[DocumentGroup] | None = Field(
        default=None, description="With group_by: the documents in order; `hits` lists theirs."
    )
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page; null when none follows (the ranking "
        "is paged to the candidate pool's depth).",
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, object]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Readiness(BaseModel):
    """`/ready`: 200 when `/retrieve` can answer, else 503 with the reason."""

    status: Literal["ready", "loading", "unavailable"]
    index: str | None = None
    collection: str | None = None
    note: str | None = Field(default=None, description="e.g. that the index is empty")
    reason: str | None = Field(default=None, description="why it is not ready")
