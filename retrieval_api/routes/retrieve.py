"""POST /retrieve."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from composition.tracing import record_stages
from index.contracts import HybridOptions, IndexNotFoundError, PayloadFilter
from index.search.cache import normalised_query
from index.search.context import Expansion
from index.search.searcher import IndexSearcher, SearchOutcome
from index.search.shaping import DEFAULT_MMR_CANDIDATES, Shape, Shaped
from index.search.shaping import shape as shape_ranking
from pipelines.cost import Cost
from retrieval_api.access import Retriever
from retrieval_api.audit import audit_row
from retrieval_api.cursor import Cursor, CursorCodec, fingerprint
from retrieval_api.cursor import expired as cursor_expired
from retrieval_api.deps import Searcher, State
from retrieval_api.hits import build_hits, explore, to_payload_filter
from retrieval_api.routes.responses import EVERY_ROUTE, error_responses
from sluice_client.request import RetrieveRequest
from sluice_client.response import (
    AppliedOptions,
    DocumentGroup,
    Hit,
    IndexInfo,
    RetrievalCost,
    RetrieveResponse,
)

router = APIRouter()


@router.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses=error_responses(
        *EVERY_ROUTE,
        401,
        403,
        410,
        422,
        429,
        500,
        s400="The body is not JSON; the cursor is not one this server issued for this request "
        "(`invalid_cursor`); or the Host header is not one this API answers (a text body)",
        s403="The key does not grant a tenant the request asks for",
    ),
    summary="Ranked chunks for a query (hybrid BM25 + dense, dense, or BM25)",
)
async def retrieve(
    body: RetrieveRequest,
    state: State,
    searcher: Searcher,
    caller: Retriever,
    request: Request,
    response: Response,
) -> RetrieveResponse:
    settings = state.settings
    started, started_ns = time.perf_counter(), time.time_ns()
    response.headers.update(getattr(request.state, "rate_headers", {}))
    scope = caller.narrowed(body.filters.tenants)
    tenant_label = ",".join(sorted(scope.tenants)) if scope.tenants is not None else "*"
    request.state.sluice_metric_labels = (body.mode, tenant_label)
    top_k = body.top_k or settings.default_top_k
    payload_filter = to_payload_filter(body.filters)
    cpu_call = state.cpu.start()
    requested = HybridOptions(
        body.fusion.method,
        body.fusion.rrf_k,
        (body.fusion.weights[0], body.fusion.weights[1]) if body.fusion.weights else None,
        body.candidate_pool,
        body.rerank_blend,
    )
    page = await run_in_threadpool(
        search_page,
        searcher,
        settings.index_name,
        body,
        top_k,
        requested,
        payload_filter,
        settings.rerank_default if body.rerank is None else body.rerank,
        scope.tenants,
        state.cursors,
    )
    outcome = page.outcome
    cpu_s = state.cpu.stop(cpu_call)
    timings = dict(outcome.timings_ms) if outcome else {}
    timings["total_ms"] = (time.perf_counter() - started) * 1000
    hits = (
        build_hits(outcome, body.mode, caller.admin, page.shaped, page.first_rank)
        if outcome and page.shaped
        else []
    )
    explored_swap = explore(hits, settings.feedback_exploration) if page.first_rank == 1 else None
    cost = Cost.of(state.cost_rates, cpu_s).estimated_cost
    if outcome is not None and request.app.state.metrics is not None:
        request.app.state.metrics.observe_search(timings, outcome.degraded)
    request_id = request.scope.get("state", {}).get("request_id", "")
    if state.query_log is not None:
        state.query_log.record(
            audit_row(
                request_id=request_id,
                body=body,
                key_id=scope.key.key_id if scope.key else None,
                tenants=scope.tenants,
                index=settings.index_name,
                top_k=top_k,
                payload_filter=payload_filter,
                outcome=outcome,
                hits=hits,
                timings_ms=timings,
                reranker_model=settings.reranker_model,
                query_fields=state.query_log.query_fields(normalised_query(body.query)),
                query_tokens=state.query_tokens(outcome, body.query),
                cpu_s=cpu_s,
                cost=cost,
                explored_swap=explored_swap,
            )
        )
    record_stages(
        "retrieve",
        started_ns,
        {name.removesuffix("_ms"): ms / 1000 for name, ms in timings.items() if name != "total_ms"},
        {
            "sluice.request_id": request_id,
            "sluice.mode": body.mode,
            "sluice.collection": outcome.collection if outcome else None,
            "sluice.cache": outcome.cache if outcome else None,
            "sluice.hits": len(hits),
        },
    )
    if outcome is None or page.shaped is None:
        return RetrieveResponse(
            query=body.query,
            mode=body.mode,
            request_id=request_id or None,
            hits=[],
            index=None,
            timings_ms=timings,
        )
    return RetrieveResponse(
        query=body.query,
        mode=body.mode,
        request_id=request_id or None,
        hits=hits,
        index=IndexInfo(
            alias=settings.index_name,
            collection=outcome.collection,
            embedding_model=outcome.spec.embedding_model,
            deployment=state.deployment,
            tuned_at=outcome.spec.tuning.tuned_at if outcome.spec.tuning else None,
        ),
        options=AppliedOptions.model_validate(asdict(outcome.options)),
        timings_ms={k: round(v, 3) for k, v in timings.items()},
        degraded=outcome.degraded,
        cache=outcome.cache or "off",
        cost=RetrievalCost(
            cpu_ms=round(cpu_s * 1000, 3), estimated_cost=cost, currency=state.cost_rates.currency
        ),
        groups=_groups(page.shaped, hits),
        next_cursor=page.next_cursor,
    )


@dataclass
class Page:
    outcome: SearchOutcome | None = None
    shaped: Shaped | None = None
    first_rank: int = 1
    next_cursor: str | None = None


def search_page(
    searcher: IndexSearcher,
    alias: str,
    body: RetrieveRequest,
    top_k: int,
    requested: HybridOptions,
    payload_filter: PayloadFilter,
    rerank: bool,
    tenants: Sequence[str] | None,
    cursors: CursorCodec,
) -> Page:
    """One page of the shaped ranking. The ranking is computed to a pinned depth (the
    candidate pool of the first page), so every page cuts the same one; a page is refused
    (410) when the index changed since the first, or while it was searched."""
    cursor = cursors.decode(body.cursor, body, tenants) if body.cursor else None
    version = searcher.version(alias)
    if version is None:
        if cursor:
            raise HTTPException(410, "cursor expired: the index is empty now")
        return Page()
    if cursor:
        if (cursor.collection, cursor.stamp) != version:
            raise cursor_expired(cursor, *version)
        pool, offset = cursor.pool, cursor.offset
    else:
        pool, offset = max(searcher.candidate_pool(alias, requested), top_k), 0
    shape = Shape(
        limit=top_k,
        offset=offset,
        group_by=body.group_by,
        group_size=body.group_size,
        mmr_diversity=body.mmr.diversity if body.mmr else None,
        mmr_candidates=body.mmr.candidates if body.mmr else DEFAULT_MMR_CANDIDATES,
        min_score=body.min_score,
        min_relative_score=body.min_relative_score,
        expansion=Expansion(
            body.expand.before, body.expand.after, body.expand.section, body.expand.max_tokens
        )
        if body.expand
        else None,
    )
    try:
        outcome = searcher.search(
            alias,
            body.query,
            body.mode,
            shape.depth(pool),
            replace(requested, candidate_pool=pool),
            payload_filter,
            rerank,
            tenants,
        )
    except IndexNotFoundError:
        return Page()
    if cursor and searcher.version(alias) != version:
        raise cursor_expired(cursor, *version)
    shaped = shape_ranking(searcher, outcome, body.query, shape)
    next_cursor = None
    if shaped.more:
        next_cursor = cursors.encode(
            Cursor(
                collection=version[0],
                stamp=version[1],
                pool=pool,
                offset=offset + top_k,
                request=fingerprint(body, tenants),
            )
        )
    first_rank = 1 if body.group_by else offset + 1
    return Page(outcome, shaped, first_rank, next_cursor)


def _groups(shaped: Shaped, hits: list[Hit]) -> list[DocumentGroup] | None:
    if shaped.groups is None:
        return None
    by_id = {hit.chunk_id: hit for hit in hits}
    groups = []
    for group in shaped.groups:
        members = [by_id[p.id] for p in group.points]
        groups.append(
            DocumentGroup(
                doc_id=members[0].doc_id,  # as its hits show it to this key
                score=group.score,
                uri=members[0].uri,
                title=members[0].title,
                hits=members,
            )
        )
    return groups
