"""Pure translation between API schemas and the index's types."""

from __future__ import annotations

from index.types import Condition, MatchAny, PayloadFilter, Range, ScoredPoint, SearchResult
from retrieval_api.schemas import Filters, Hit, RangeFilter, StageScores


def to_payload_filter(filters: Filters) -> PayloadFilter:
    must: list[Condition] = []
    if filters.doc_ids:
        must.append(MatchAny("doc_id", filters.doc_ids))
    if filters.sources:
        must.append(MatchAny("source", filters.sources))
    for key, condition in filters.metadata.items():
        if isinstance(condition, RangeFilter):
            must.append(Range(key, condition.gte, condition.gt, condition.lte, condition.lt))
        elif isinstance(condition, list):
            must.append(MatchAny(key, condition))
        else:
            must.append(MatchAny(key, [condition]))
    return PayloadFilter(must=must)


def _ranks(points: list[ScoredPoint]) -> dict[str, tuple[int, float]]:
    return {p.id: (rank, p.score) for rank, p in enumerate(points, start=1)}


def build_hits(result: SearchResult, mode: str) -> list[Hit]:
    """Hits in final order, each with every stage's score and rank where it took part."""
    dense = _ranks(result.dense)
    sparse = _ranks(result.sparse)
    hits = []
    for rank, point in enumerate(result.hits, start=1):
        scores = StageScores()
        if mode == "dense":
            scores.dense, scores.dense_rank = point.score, rank
        elif mode == "bm25":
            scores.bm25, scores.bm25_rank = point.score, rank
        else:
            scores.fused, scores.fused_rank = point.score, rank
            if point.id in dense:
                scores.dense_rank, scores.dense = dense[point.id]
            if point.id in sparse:
                scores.bm25_rank, scores.bm25 = sparse[point.id]
        payload = point.payload
        hits.append(
            Hit(
                chunk_id=point.id,
                doc_id=str(payload.get("doc_id", "")),
                uri=str(payload.get("uri", "")),
                title=str(payload.get("title", "")),
                text=str(payload.get("text", "")),
                headings=list(payload.get("headings", [])),
                pages=list(payload.get("pages", [])),
                element_types=list(payload.get("element_types", [])),
                char_start=int(payload.get("char_start", 0)),
                char_end=int(payload.get("char_end", 0)),
                rank=rank,
                score=point.score,
                scores=scores,
            )
        )
    return hits
