"""What the framework retrievers make of a hit: its text and its metadata."""

from __future__ import annotations

from typing import Any

from retrieval_api.schemas import Hit

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


def hit_metadata(hit: Hit) -> dict[str, Any]:
    return {name: getattr(hit, name) for name in METADATA_FIELDS}
