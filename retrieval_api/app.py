"""`create_app(settings)`: the FastAPI application, built from one `Settings`."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from composition.components import Components
from composition.tracing import configure_tracing
from config.settings import Settings
from index.contracts import StoreError, VectorStore
from index.versions import active_spec
from ingest.manifest import Manifest
from retrieval_api.access import RATE_HEADERS, Access, allowed_hosts
from retrieval_api.deps import ServiceState
from retrieval_api.limits import BodyGuard, ConcurrencyLimit, searches_at_once
from retrieval_api.metrics import ApiMetrics, CacheCollector, IndexCollector, RequestCounter
from retrieval_api.request_id import RequestId
from retrieval_api.routes import feedback, health, retrieve, sources
from retrieval_api.routes import metrics as metrics_route
from retrieval_api.warm_up import warm_up
from state.database import STATE_WAIT_S

logger = logging.getLogger("sluice.api")


FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    410: "cursor_expired",
    413: "body_too_large",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def _error(status: int, code: str, message: str, details: object = None) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def create_app(settings: Settings, store: VectorStore | None = None) -> FastAPI:
    """`store`: one the caller opened and closes (a process that also runs flows on the
    embedded engine, whose shards one process holds at a time); by default the app opens its
    own from settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving_store = store or Components(settings).store()
        parts = Components(settings)
        state = ServiceState(settings, serving_store, parts.deployment_id())
        spec = active_spec(serving_store, settings.index_name)
        if spec is not None:
            state.embedder_for(spec)
            await run_in_threadpool(
                warm_up,
                serving_store,
                state.searcher,
                settings.index_name,
                settings.warm_up_searches,
            )
        app.state.service = state
        # What start-up made (models, tokenizers, the index's tables) lives as long as the
        # process: out of the collector's sight, a full collection stops every request ~250 ms
        # every ~40 s under load (measured) instead of looking at them all again.
        gc.collect()
        gc.freeze()
        if not app.state.access.required:
            logger.warning(
                "serving %s without API keys (SLUICE_AUTH=%s, bound to %s): every caller reads "
                "every tenant; bind a network address, or set SLUICE_AUTH=required, to need keys",
                settings.index_name,
                settings.auth,
                settings.api_host,
            )
        try:
            yield
        finally:
            state.close()
            if store is None:
                serving_store.close()

    app = FastAPI(
        title="Sluice retrieval API",
        version=version("sluice-rag"),
        description="Hybrid BM25 + dense retrieval over Sluice indexes.",
        lifespan=lifespan,
    )
    app.state.access = Access.of(settings)
    configure_tracing(settings.tracing, "sluice-api")
    # The last added runs first: hosts, then CORS, then the body bound (the whole body is read
    # before the request counts as a search, so a slow body holds no search slot), then the
    # concurrency bound.
    app.add_middleware(
        ConcurrencyLimit,
        limit=searches_at_once(settings.max_concurrent_searches),
        queued=settings.max_queued_searches,
        wait_s=settings.search_queue_wait_s,
    )
    app.add_middleware(
        BodyGuard, max_bytes=settings.max_body_bytes, timeout_s=settings.client_timeout_s
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-api-key"],
            expose_headers=["retry-after", *RATE_HEADERS],
            max_age=600,
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
    app.state.metrics = None
    if settings.metrics:
        app.state.metrics = ApiMetrics(IndexCollector(lambda: _index_readers(app, settings)))
        app.state.metrics.registry.register(CacheCollector(lambda: _caches(app)))
        app.add_middleware(RequestCounter, metrics=app.state.metrics)  # counts every answer
        app.include_router(metrics_route.router)
    app.add_middleware(RequestId)  # outermost: even a refused request has its id
    app.include_router(health.router)
    app.include_router(retrieve.router)
    app.include_router(sources.router)
    app.include_router(feedback.router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        # Union members show up in `loc` as tags (`constrained-int`, `IntegerRange`): not places.
        place = [str(p) for p in first["loc"] if isinstance(p, int) or FIELD.match(str(p))]
        where = ".".join(p for p in place if p != "body") or "body"
        message = str(first["msg"]).removeprefix("Value error, ")
        if first.get("type") == "json_invalid":  # not a request at all: a syntax error
            return _error(400, "invalid_json", f"body: {message}", details)
        return _error(422, "invalid_request", f"{where}: {message}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or ERROR_CODES.get(exc.status_code, "http_error")
        response = _error(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(StoreError)
    async def index_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        """Either backend: the index is held elsewhere, its owner process does not answer in
        time (stopped), or its collection went away (a version dropped between resolving the
        alias and searching); a retry may succeed."""
        response = _error(503, "index_unavailable", str(exc))
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(OperationalError)
    async def state_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        """The state database (rate buckets, keys) is down, or a stopped process holds the lock
        a request needs past its wait (`state.database.STATE_WAIT_S`): a retry may succeed."""
        logger.warning("state database on %s: %s", request.url.path, exc.orig or exc)
        message = f"the state database did not answer: {exc.orig}"
        response = _error(503, "state_unavailable", message)
        response.headers["Retry-After"] = str(STATE_WAIT_S)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; see the server log")

    return app


def _caches(app: FastAPI) -> list[tuple[str, Any]]:
    service = getattr(app.state, "service", None)
    if service is None:
        return []
    return [("result", service.searcher.results), ("query_vector", service.searcher.query_vectors)]


def _index_readers(app: FastAPI, settings: Settings) -> tuple[VectorStore, Any, Any]:
    """For a scrape: the served store, each index's manifest where it has one, and each
    index's storage in bytes."""
    parts = Components(settings)
    store: VectorStore = app.state.service.store

    def manifest_of(index: str) -> Manifest | None:
        return parts.manifest(index) if parts.has_manifest(index) else None

    return store, manifest_of, lambda index: parts.storage(store, index).bytes
