"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from retrieval_api.deps import State

router = APIRouter()


@router.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The index is reachable and its embedding model is loaded")
async def ready(state: State) -> JSONResponse:
    alias = state.settings.index_name
    try:
        collection = state.store.resolve_alias(alias)
        spec = state.store.collection_spec(collection) if collection else None
    except Exception as error:
        return JSONResponse({"status": "unavailable", "reason": str(error)}, status_code=503)
    if spec is None:
        return JSONResponse(
            {"status": "ready", "index": alias, "collection": None, "note": "index is empty"}
        )
    loaded = state.has_embedder_for(spec)
    if not loaded:  # after a switch to a new model: load it now, not on a request
        state.load_in_background(spec)
    body = {"status": "ready" if loaded else "loading", "index": alias, "collection": collection}
    return JSONResponse(body, status_code=200 if loaded else 503)
