"""Pure translation between API schemas and the index's types."""

from __future__ import annotations

import random

from index.contracts import Condition, MatchAny, PayloadFilter, Range, ScoredPoint
from index.search.searcher import SearchOutcome
from index.search.shaping import Shaped, relative_scores
from ingest.types import public_uri
from sluice_client.request import Filters, IntegerRange
from sluice_client.response import Hit, StageScores


def to_payload_filter(filters: Filters) -> PayloadFilter:
    must: list[Condition] = []
    if filters.doc_ids:
        must.append(_documents(filters.doc_ids))
    if filters.sources:
        must.append(MatchAny("source", filters.sources))
    for key, condition in filters.metadata:
        if condition is None:
            continue
        if isinstance(condition, IntegerRange):
            must.append(Range(key, condition.gte, condition.gt, condition.lte, condition.lt))
            continue
        values = condition if isinstance(condition, list) else [condition]
        must.append(MatchAny("public_uri" if key == "source_path" else key, values))
    return PayloadFilter(must=must)


def _documents(doc_ids: list[str]) -> MatchAny:
    """Documents by the ids a caller was shown: a location (`file:///…`, `s3://…`), which an
    admin key sees, or a file's public form (`<source>/<path>`: a slash, no `://`), which every
    other key sees. An S3 or web document's public form is its location, so a list with any
    file's public form is matched on the public form alone, which finds those too."""
    if any("/" in doc_id and "://" not in doc_id for doc_id in doc_ids):
        return MatchAny("public_uri", doc_ids)
    return MatchAny("doc_id", doc_ids)


def _ranks(points: list[ScoredPoint]) -> dict[str, tuple[int, float]]:
    return {p.id: (rank, p.score) for rank, p in enumerate(points, start=1)}


def build_hits(
    outcome: SearchOutcome,
    mode: str,
    full_paths: bool = True,
    shaped: Shaped | None = None,
    first_rank: int = 1,
) -> list[Hit]:
    """Hits in final order, each with every stage's score and rank where it took part.
    Without `full_paths` (a key that is not admin) a file is shown as its source and its path
    within it, never as the server's absolute path, in its `uri` and its `doc_id` alike (a
    filter by `doc_ids` takes that form back). `shaped`: the page to show (by default
    the outcome's hits), its hits ranked from `first_rank`."""
    dense = _ranks(outcome.result.dense)
    sparse = _ranks(outcome.result.sparse)
    first = _ranks(outcome.first_stage)
    if mode == "dense":
        dense = first
    elif mode == "bm25":
        sparse = first
    reranked = outcome.rerank_scores
    rerank_ranks = {
        point_id: rank
        for rank, point_id in enumerate(sorted(reranked, key=lambda i: -reranked[i]), start=1)
    }
    shaped = shaped or Shaped(
        hits=outcome.result.hits, relative=relative_scores(outcome.result.hits)
    )
    hits = []
    for rank, point in enumerate(shaped.hits, start=first_rank):
        scores = StageScores()
        if point.id in dense:
            scores.dense_rank, scores.dense = dense[point.id]
        if point.id in sparse:
            scores.bm25_rank, scores.bm25 = sparse[point.id]
        if mode == "hybrid" and point.id in first:
            scores.fused_rank, scores.fused = first[point.id]
        if point.id in reranked:
            scores.rerank, scores.rerank_rank = reranked[point.id], rerank_ranks[point.id]
        scores.mmr = shaped.mmr.get(point.id)
        payload = point.payload
        public = None if full_paths else _public_uri(payload)
        hits.append(
            Hit(
                chunk_id=point.id,
                doc_id=str(payload.get("doc_id", "")) if public is None else public,
                uri=str(payload.get("uri", "")) if public is None else public,
                title=str(payload.get("title", "")),
                text=str(payload.get("text", "")),
                headings=list(payload.get("headings", [])),
                pages=list(payload.get("pages", [])),
                element_types=list(payload.get("element_types", [])),
                char_start=int(payload.get("char_start", 0)),
                char_end=int(payload.get("char_end", 0)),
                metadata=dict(payload.get("metadata") or {}),  # type: ignore[call-overload]
                rank=rank,
                score=point.score,
                relative_score=round(shaped.relative.get(point.id, 0.0), 6),
                scores=scores,
                highlights=shaped.highlights.get(point.id, []),
                context_text=shaped.contexts.get(point.id),
                context_highlights=shaped.context_highlights.get(point.id),
                highlights_note=shaped.highlight_notes.get(point.id),
            )
        )
    return hits


def _public_uri(payload: dict[str, object]) -> str:
    """Stored at ingest; computed the same way for points indexed before it was."""
    if stored := payload.get("public_uri"):
        return str(stored)
    return public_uri(
        str(payload.get("uri", "")), str(payload.get("source", "")), str(payload.get("path", ""))
    )


EXPLORED_DEPTH = 10


def explore(hits: list[Hit], share: float, rng: random.Random | None = None) -> int | None:
    """With probability `share`, two adjacent hits of the first `EXPLORED_DEPTH` trade places
    (RandPair): the rank k of the first of them, else None. Clicks on such answers are how the
    examination probability of each position is measured (`pipelines/click_model.py`)."""
    depth = min(EXPLORED_DEPTH, len(hits))
    rng = rng or random.Random()
    if depth < 2 or share <= 0 or rng.random() >= share:
        return None
    k = rng.randrange(1, depth)
    upper, lower = hits[k - 1], hits[k]
    hits[k - 1] = lower.model_copy(update={"rank": upper.rank})
    hits[k] = upper.model_copy(update={"rank": lower.rank})
    return k
