"""`POST /feedback`: what a user did with an answer's hits (clicked one, judged one relevant or
not), sent by the application that showed them, keyed by the answer's `request_id`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ITEMS_MAX = 100
Id = Annotated[str, Field(min_length=1, max_length=200)]


class FeedbackItem(BaseModel):
    """One hit of the answer, by `chunk_id` or `doc_id` (as the answer gave them), and a label."""

    model_config = ConfigDict(extra="forbid")

    chunk_id: Id | None = None
    doc_id: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    label: Literal["clicked", "relevant", "not_relevant"]
    rank: int | None = Field(
        default=None, ge=1, le=10_000, description="Where the application showed it, from 1"
    )
    dwell_ms: int | None = Field(
        default=None, ge=0, le=86_400_000, description="How long the user stayed on it"
    )

    @model_validator(mode="after")
    def _one_id(self) -> FeedbackItem:
        if (self.chunk_id is None) == (self.doc_id is None):
            raise ValueError("give one of chunk_id or doc_id")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: Id = Field(description="The answer's `request_id` (or X-Request-ID header)")
    event_id: Id = Field(
        description="The client's id for this event: a repeat of it (a retry) is stored once"
    )
    items: list[FeedbackItem] = Field(min_length=1, max_length=ITEMS_MAX)


class FeedbackReceipt(BaseModel):
    request_id: str
    event_id: str
    items: int = Field(description="Items stored (0 for a repeat)")
    duplicate: bool = Field(description="The event id was taken before: nothing stored again")
