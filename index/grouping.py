"""Documents, not fragments: a ranking of chunks collapsed to one group per document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from index.types import ScoredPoint


@dataclass
class DocumentGroup:
    doc_id: str
    score: float
    """The document's score: its best chunk's final score (what ranked it first)."""
    points: list[ScoredPoint] = field(default_factory=list)


def group_by_document(ranking: Sequence[ScoredPoint], per_group: int) -> list[DocumentGroup]:
    """Groups in the order of each document's first chunk in `ranking` (already fused, reranked
    and diversified: the final order), each with its first `per_group` chunks in that order.
    Like Elasticsearch's `collapse` with `inner_hits`: the best chunk decides the document."""
    groups: dict[str, DocumentGroup] = {}
    for point in ranking:
        doc_id = str(point.payload.get("doc_id", point.id))
        group = groups.get(doc_id)
        if group is None:
            group = groups[doc_id] = DocumentGroup(doc_id, point.score)
        if len(group.points) < per_group:
            group.points.append(point)
    return list(groups.values())
