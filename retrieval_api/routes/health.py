"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from retrieval_api.access import is_loopback
from retrieval_api.deps import ServiceState, State
from retrieval_api.routes.responses import EVERY_ROUTE, error_responses
from sluice_client.response import ErrorResponse, Readiness

router = APIRouter()


@router.get(
    "/health",
    summary="The process is up, and which deployment and index it serves",
    responses=error_responses(*EVERY_ROUTE),
)
async def health(state: State) -> dict[str, str]:
    """`data_dir` only where no other machine can ask (bound to loopback, embedded engine): a
    CLI command of another data dir names it in its error, so the fix is one variable away."""
    body = {"status": "ok", "deployment": state.deployment, "index": state.settings.index_name}
    settings = state.settings
    if is_loopback(settings.api_host) and not settings.qdrant_url:
        body["data_dir"] = str(settings.data_dir.resolve())
    return body


@router.get(
    "/ready",
    summary="The index answers searches and its models (embedder, reranker if set) are loaded",
    response_model=Readiness,
    responses={
        **error_responses(*EVERY_ROUTE, 401, 429),
        503: {
            "model": Readiness | ErrorResponse,
            "description": "Not ready (the index does not answer, or its model is loading), "
            "or the server is at its connection limit",
        },
    },
)
async def ready(state: State, request: Request) -> JSONResponse:
    if state.settings.ready_needs_key:
        request.app.state.access.caller(request)
    return await run_in_threadpool(_readiness, state)


def _readiness(state: ServiceState) -> JSONResponse:
    """Ready exactly when `/retrieve` can answer as configured: the serving collection answers
    a count (so the shards are open, here or in the process that owns them), its model is
    loaded, and so is the reranker where one is set (a rolling switch to a new reranker sends
    no traffic to a replica that would skip it). A reranker that failed to load does not hold
    readiness back: answers say `reranker unavailable` in `degraded`."""
    alias = state.settings.index_name
    try:
        # What a search asks first (the alias and the version's write stamp), then a count.
        version = state.searcher.version(alias)
        collection = version[0] if version else None
        spec = state.store.collection_spec(collection) if collection else None
        if collection and spec:
            state.store.count(collection)
    except Exception as error:
        return JSONResponse({"status": "unavailable", "reason": str(error)}, status_code=503)
    if spec is None:
        return JSONResponse(
            {"status": "ready", "index": alias, "collection": None, "note": "index is empty"}
        )
    loaded = state.has_embedder_for(spec)
    if not loaded:  # after a switch to a new model: load it now, not on a request
        state.load_in_background(spec)
    reranker = state.searcher.reranker  # the one requests are answered with
    reranker_loading = reranker is not None and reranker.is_loading()
    ready = loaded and not reranker_loading
    body = {"status": "ready" if ready else "loading", "index": alias, "collection": collection}
    if reranker_loading:
        body["reason"] = "the reranker model is loading"
    return JSONResponse(body, status_code=200 if ready else 503)
