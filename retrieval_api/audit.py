"""What the query log keeps of one `/retrieve` call (`index/query_log.py` has the columns)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from index.contracts import PayloadFilter
from index.query_log import filter_to_json
from index.search.searcher import SearchOutcome
from sluice_client.request import RetrieveRequest
from sluice_client.response import Hit

AGREEMENT_DEPTH = 10


def quality_signals(outcome: SearchOutcome | None, hits: list[Hit]) -> dict[str, float | None]:
    """Heuristics, not judgements: they need no relevance labels, and they flag queries worth a
    look. `dense_bm25_agreement`: the share of the dense top 10 that is also in the BM25 top 10
    (hybrid only; low: the two retrievers disagree, and fusion had to pick). `top_margin`: how
    far the first hit's final score is ahead of the second, relative to the first (low: a near
    tie at the top)."""
    agreement = None
    if outcome is not None and outcome.result.dense and outcome.result.sparse:
        dense = {p.id for p in outcome.result.dense[:AGREEMENT_DEPTH]}
        sparse = {p.id for p in outcome.result.sparse[:AGREEMENT_DEPTH]}
        agreement = len(dense & sparse) / AGREEMENT_DEPTH
    margin = None
    if len(hits) >= 2 and hits[0].score:
        margin = (hits[0].score - hits[1].score) / abs(hits[0].score)
    return {"dense_bm25_agreement": agreement, "top_margin": margin}


def audit_row(
    *,
    request_id: str,
    body: RetrieveRequest,
    key_id: str | None,
    tenants: tuple[str, ...] | None,
    index: str,
    top_k: int,
    payload_filter: PayloadFilter,
    outcome: SearchOutcome | None,
    hits: list[Hit],
    timings_ms: dict[str, float],
    reranker_model: str | None,
    query_fields: dict[str, str | None],
    query_tokens: int | None,
    cpu_s: float,
    cost: float,
    explored_swap: int | None = None,
) -> dict[str, Any]:
    filters = body.filters.model_dump(exclude_none=True, exclude_defaults=True)
    return {
        "request_id": request_id,
        "time": datetime.now(UTC),
        "key_id": key_id,
        "tenants": list(tenants) if tenants is not None else None,
        "index": index,
        "collection": outcome.collection if outcome else None,
        "embedding_model": outcome.spec.embedding_model if outcome else None,
        "reranker_model": reranker_model if outcome and outcome.rerank_scores else None,
        "mode": body.mode,
        "top_k": top_k,
        "rerank": bool(outcome and outcome.rerank_scores),
        "filters": json.dumps(filters, sort_keys=True) if filters else None,
        "payload_filter": filter_to_json(payload_filter),
        **query_fields,
        "query_tokens": query_tokens,
        "chunk_ids": [h.chunk_id for h in hits],
        "doc_ids": [h.doc_id for h in hits],
        "scores": [h.score for h in hits],
        "dense_scores": [h.scores.dense for h in hits],
        "bm25_scores": [h.scores.bm25 for h in hits],
        "fused_scores": [h.scores.fused for h in hits],
        "rerank_scores": [h.scores.rerank for h in hits],
        "latency_ms": timings_ms.get("total_ms"),
        **{
            name: timings_ms.get(name)
            for name in ("embed_ms", "bm25_encode_ms", "search_ms", "fusion_ms", "rerank_ms")
        },
        "cpu_ms": cpu_s * 1000,
        "cost_estimate": cost,
        "cache": (outcome.cache or "off") if outcome else None,
        "degraded": list(outcome.degraded) if outcome else [],
        **quality_signals(outcome, hits),
        "explored_swap": explored_swap,
    }
