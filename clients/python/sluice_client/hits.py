"""What the framework retrievers make of a hit: its text and its metadata."""

from __future__ import annotations

from typing import Any

from sluice_client.request import RetrieveRequest
from sluice_client.response import Hit

METADATA_FIELDS = (
    "chunk_id",
    "doc_id",
    "uri",
    "title",
    "score",
    "relative_score",
    "rank",
    "pages",
    "headings",
    "element_types",
    "char_start",
    "char_end",
)
PROMPT_FIELDS = ("uri", "title", "pages", "headings")
"""The metadata worth showing a language model beside the text (LlamaIndex puts metadata into
prompts unless told not to); ids, scores and offsets are for code."""


def hit_text(hit: Hit) -> str:
    """The hit with its neighbours where the request asked for them (`expand`), else its own."""
    return hit.context_text if hit.context_text is not None else hit.text


def hit_metadata(hit: Hit, request_id: str | None = None) -> dict[str, Any]:
    """The hit's fields, beside its source's metadata (a database row's metadata columns; on
    a name both use, the hit's field wins), and the answer's `request_id`: what `feedback`
    names it by."""
    fields = {name: getattr(hit, name) for name in METADATA_FIELDS}
    return {**hit.metadata, **fields, "request_id": request_id}


def request_options(options: dict[str, Any], top_k: int | None = None) -> dict[str, Any]:
    """The request fields a retriever sends: its options, with `top_k` where one was given.
    A name that is no field of the request is refused here, not sent and ignored."""
    unknown = sorted(set(options) - set(RetrieveRequest.model_fields) - {"query"})
    if unknown or "query" in options:
        known = ", ".join(name for name in RetrieveRequest.model_fields if name != "query")
        wrong = ", ".join(unknown or ["query"])
        raise TypeError(f"not a request option: {wrong} (the options are: {known})")
    return {**options, "top_k": top_k} if top_k is not None else dict(options)
