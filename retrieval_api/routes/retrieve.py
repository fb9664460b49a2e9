"""POST /retrieve."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from index.fusion import FusionParams
from index.types import IndexNotFoundError
from retrieval_api.deps import Searcher, State
from retrieval_api.hits import build_hits, to_payload_filter
from retrieval_api.schemas import ErrorResponse, IndexInfo, RetrieveRequest, RetrieveResponse

router = APIRouter()


@router.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses={422: {"model": ErrorResponse}, 500: {"model": ErrorResponse}},
    summary="Ranked chunks for a query (hybrid BM25 + dense, dense, or BM25)",
)
async def retrieve(body: RetrieveRequest, state: State, searcher: Searcher) -> RetrieveResponse:
    settings = state.settings
    started = time.perf_counter()
    try:
        outcome = await run_in_threadpool(
            searcher.search,
            settings.index_name,
            body.query,
            body.mode,
            body.top_k or settings.default_top_k,
            body.candidate_pool or settings.candidate_pool,
            FusionParams(
                method=body.fusion.method or settings.fusion_method,
                rrf_k=body.fusion.rrf_k or settings.rrf_k,
                weights=body.fusion.weights or settings.fusion_weights,
            ),
            to_payload_filter(body.filters),
            settings.rerank_default if body.rerank is None else body.rerank,
        )
    except IndexNotFoundError:
        elapsed = (time.perf_counter() - started) * 1000
        return RetrieveResponse(
            query=body.query, mode=body.mode, hits=[], index=None, timings_ms={"total_ms": elapsed}
        )
    timings = dict(outcome.timings_ms)
    timings["total_ms"] = (time.perf_counter() - started) * 1000
    return RetrieveResponse(
        query=body.query,
        mode=body.mode,
        hits=build_hits(outcome, body.mode),
        index=IndexInfo(
            alias=settings.index_name,
            collection=outcome.collection,
            embedding_model=outcome.spec.embedding_model,
            deployment=state.deployment,
        ),
        timings_ms={k: round(v, 3) for k, v in timings.items()},
        degraded=outcome.degraded,
    )
