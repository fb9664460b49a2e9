"""GET /metrics: Prometheus text format (`retrieval_api/metrics.py` says what is in it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from retrieval_api.deps import State
from retrieval_api.routes.responses import EVERY_ROUTE, error_responses

router = APIRouter()


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, stage latencies, indexes and ingest runs",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        },
        **error_responses(
            *EVERY_ROUTE,
            401,
            403,
            429,
            s401="No API key where keys are required, or one that is unknown, revoked or expired",
            s403="The key is not an admin key (SLUICE_METRICS_NEEDS_KEY)",
        ),
    },
)
async def metrics(state: State, request: Request) -> Response:
    """An admin key where keys are required, unless SLUICE_METRICS_NEEDS_KEY is false."""
    if state.settings.metrics_needs_key:
        request.app.state.access.caller(request, scope="admin")
    body = await run_in_threadpool(request.app.state.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
