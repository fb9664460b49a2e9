"""POST /retrieve."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from index.types import HybridOptions, IndexNotFoundError
from retrieval_api.access import Retriever
from retrieval_api.deps import Searcher, State
from retrieval_api.hits import build_hits, to_payload_filter
from retrieval_api.schemas import (
    AppliedOptions,
    ErrorResponse,
    IndexInfo,
    RetrieveRequest,
    RetrieveResponse,
)

router = APIRouter()

ERROR_STATUSES = {
    400: "The body is not JSON",
    401: "No API key, or one that is unknown, revoked or expired",
    403: "The key does not grant a tenant the request asks for",
    408: "The body did not arrive in time",
    413: "The body is larger than the server accepts",
    422: "The request does not match the schema",
    429: "The key's rate limit is exceeded (see Retry-After)",
    500: "A server error",
    503: "The index is unavailable, or the server is at its concurrency limit (see Retry-After)",
}


@router.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses={
        status: {"model": ErrorResponse, "description": why}
        for status, why in ERROR_STATUSES.items()
    },
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
    started = time.perf_counter()
    response.headers.update(getattr(request.state, "rate_headers", {}))
    scope = caller.narrowed(body.filters.tenants)
    tenant_label = ",".join(sorted(scope.tenants)) if scope.tenants is not None else "*"
    request.state.sluice_metric_labels = (body.mode, tenant_label)
    try:
        outcome = await run_in_threadpool(
            searcher.search,
            settings.index_name,
            body.query,
            body.mode,
            body.top_k or settings.default_top_k,
            HybridOptions(
                body.fusion.method,
                body.fusion.rrf_k,
                (body.fusion.weights[0], body.fusion.weights[1]) if body.fusion.weights else None,
                body.candidate_pool,
                body.rerank_blend,
            ),
            to_payload_filter(body.filters),
            settings.rerank_default if body.rerank is None else body.rerank,
            scope.tenants,
        )
    except IndexNotFoundError:
        elapsed = (time.perf_counter() - started) * 1000
        return RetrieveResponse(
            query=body.query, mode=body.mode, hits=[], index=None, timings_ms={"total_ms": elapsed}
        )
    timings = dict(outcome.timings_ms)
    timings["total_ms"] = (time.perf_counter() - started) * 1000
    request.app.state.metrics.observe_search(timings, outcome.degraded)
    return RetrieveResponse(
        query=body.query,
        mode=body.mode,
        hits=build_hits(outcome, body.mode, full_paths=caller.admin),
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
    )
