"""A hit with the text around it: its neighbouring chunks of the same document version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chunking.ids import chunk_point_id
from index.contracts import ScoredPoint, VectorStore

SECTION_REACH = 32
"""Chunks looked at on each side of a hit for its whole section (a longer section is cut at
the token budget anyway)."""


@dataclass(frozen=True)
class Expansion:
    before: int = 0
    after: int = 0
    section: bool = False
    """The whole section (chunks under the same headings) instead of `before` and `after`."""
    max_tokens: int = 1024
    """The budget of a hit's context, the hit included; neighbours are added nearest first."""


def _neighbour_ids(payload: dict[str, object], reach_before: int, reach_after: int) -> list[str]:
    doc_id, version = str(payload.get("doc_id", "")), str(payload.get("doc_version", ""))
    ordinal = int(str(payload.get("ordinal", 0)))
    first = max(0, ordinal - reach_before)
    return [
        chunk_point_id(doc_id, version, n)
        for n in range(first, ordinal + reach_after + 1)
        if n != ordinal
    ]


def expand_context(
    store: VectorStore, collection: str, hits: Sequence[ScoredPoint], expansion: Expansion
) -> dict[str, str]:
    """Each hit's `context_text`: its text with the neighbours that fit the budget, merged in
    document order with the chunker's overlap removed (chunks are spans of one text). One
    `fetch` for every hit's neighbours."""
    reach = (
        (SECTION_REACH, SECTION_REACH)
        if expansion.section
        else (
            expansion.before,
            expansion.after,
        )
    )
    wanted = {n for hit in hits for n in _neighbour_ids(hit.payload, *reach)}
    fetched = {p.id: p.payload for p in store.fetch(collection, sorted(wanted))} if wanted else {}
    contexts = {}
    for hit in hits:
        chosen = _within_budget(hit.payload, fetched, reach, expansion)
        contexts[hit.id] = merge_spans(chosen)
    return contexts


def _within_budget(
    payload: dict[str, object],
    fetched: dict[str, dict[str, object]],
    reach: tuple[int, int],
    expansion: Expansion,
) -> list[dict[str, object]]:
    doc_id, version = str(payload.get("doc_id", "")), str(payload.get("doc_version", ""))
    ordinal = int(str(payload.get("ordinal", 0)))
    headings = payload.get("headings")
    budget = expansion.max_tokens - int(str(payload.get("token_count", 0)))
    chosen = [payload]
    sides = {-1: reach[0], 1: reach[1]}
    open_sides = {side for side, n in sides.items() if n > 0}
    distance = 1
    while open_sides:
        for side in sorted(open_sides, reverse=True):  # after first, then before
            neighbour = (
                fetched.get(chunk_point_id(doc_id, version, ordinal + side * distance))
                if distance <= sides[side]
                else None
            )
            if neighbour is None or (expansion.section and neighbour.get("headings") != headings):
                open_sides.discard(side)
                continue
            cost = int(str(neighbour.get("token_count", 0)))
            if cost > budget:
                open_sides.discard(side)
                continue
            budget -= cost
            chosen.append(neighbour)
        distance += 1
    return chosen


def merge_spans(chunks: Sequence[dict[str, object]]) -> str:
    """Texts in document order; where a chunk starts inside the previous one (the chunker's
    overlap) only its new part is added. What lies between two chunks that do not touch is
    whitespace the chunker left out: a space within a paragraph, a blank line between
    paragraphs and sections (the parser joins elements with one)."""
    ordered = sorted(chunks, key=lambda c: int(str(c.get("char_start", 0))))
    parts: list[str] = []
    end = -1
    for chunk in ordered:
        text = str(chunk.get("text", ""))
        start = int(str(chunk.get("char_start", 0)))
        if end < 0:
            parts.append(text)
        elif start < end:
            parts.append(text[end - start :])
        else:
            parts.append((" " if start - end == 1 else "\n\n") + text)
        end = max(end, start + len(text))
    return "".join(parts)
