"""Documents, not fragments: a ranking of chunks collapsed to one group per document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from index.contracts import ScoredPoint


@dataclass
class DocumentGroup:
    doc_id: str
    score: float
    """The document's score: its best chunk's final score (what ranked it first)."""
    points: list[ScoredPoint] = field(default_factory=list)


def group_by_document(ranking: Sequence[ScoredPoint], per_group: int) -> list[DocumentGroup]:
    """Groups in the order of each document's first chunk in `ranking` (already fused, reranked
    and diversified: the final order), each with its first `per_group` chunks in that order.
    Like Elasticsearch's `collapse` with `inner_hits`: the best chunk decides the document.
    A document is one source's: two sources' copies of one file are two groups."""
    groups: dict[tuple[str, str], DocumentGroup] = {}
    for point in ranking:
        doc_id = str(point.payload.get("doc_id", point.id))
        key = (str(point.payload.get("source", "")), doc_id)
        group = groups.get(key)
        if group is None:
            group = groups[key] = DocumentGroup(doc_id, point.score)
        if len(group.points) < per_group:
            group.points.append(point)
    return list(groups.values())
