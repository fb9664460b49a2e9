"""POST /sources/{name}/sync and GET /runs/{run_id}: a sync of a source asked for now (by an S3
event notification, a CMS publish hook, a CI job), run as a flow run of the source's deployment
like a scheduled one (`composition/prefect_runs.py` says why), and its state and report."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from composition.components import Components
from composition.prefect_runs import FlowRunState, PrefectRuns, RunsUnavailable, prefect_home
from retrieval_api.deps import ServiceState, State
from retrieval_api.routes.responses import EVERY_ROUTE, error_responses
from sluice_client.sync import RunStatus, SyncRequest

router = APIRouter()
_ADMIN = error_responses(
    *EVERY_ROUTE, 401, 403, 429,
    s401="No API key where keys are required, or one that is unknown, revoked or expired",
    s403="The key is not an admin key",
)  # fmt: skip


@router.post(
    "/sources/{name}/sync",
    summary="Sync a configured source now (only what changed), or only some of its paths",
    status_code=202,
    response_model=RunStatus,
    responses={
        **_ADMIN,
        **error_responses(
            404,
            422,
            503,
            s404="No source of that name in the server's configuration",
            s503="No Prefect server answers, or it has no deployment for the source "
            "(see Retry-After); or the server is at its connection limit",
        ),
    },
)
async def sync_source(
    name: str, state: State, request: Request, body: SyncRequest | None = None
) -> RunStatus:
    """An admin key where keys are required. Answers at once with the flow run's id."""
    request.app.state.access.caller(request, scope="admin")
    if name not in {source.name for source in state.settings.sources}:
        raise HTTPException(404, f"no source named '{name}' in this server's configuration")
    kind = state.settings.source(name).type
    paths, urls = (body.paths, body.urls) if body else (None, None)
    if paths is not None and kind not in ("local", "s3"):
        raise HTTPException(422, f"source '{name}' is {kind}: `paths` is for folders and S3")
    if urls is not None and kind != "http":
        raise HTTPException(422, f"source '{name}' is {kind}: `urls` is for http sources")
    parameters: dict[str, Any] = {"source": name}
    if paths:
        parameters["paths"] = paths
    if urls:
        parameters["urls"] = urls
    started = await _prefect(state, lambda runs: runs.start(name, parameters))
    assert started is not None
    return _status(started, None)


@router.get(
    "/runs/{run_id}",
    summary="A run's state, and its report once it is in the index's history",
    response_model=RunStatus,
    responses={**_ADMIN, **error_responses(404, s404="No run with that id")},
)
async def run_status(run_id: str, state: State, request: Request) -> RunStatus:
    request.app.state.access.caller(request, scope="admin")
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise HTTPException(404, f"no run with id '{run_id}' (a run id is a UUID)") from None
    found = await _prefect(state, lambda runs: runs.status(run_id))
    if found is None:
        raise HTTPException(404, f"no run with id '{run_id}'")
    report = await run_in_threadpool(_report, state, run_id)
    return _status(found, report)


async def _prefect(state: ServiceState, call: Any) -> FlowRunState | None:
    runs = PrefectRuns(prefect_home(state.settings))
    try:
        result: FlowRunState | None = await run_in_threadpool(call, runs)
    except RunsUnavailable as error:
        raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from error
    return result


def _report(state: ServiceState, run_id: str) -> dict[str, Any] | None:
    parts = Components(state.settings)
    if not parts.has_manifest():
        return None
    manifest = parts.manifest()
    try:
        found = [r for r in manifest.runs(limit=1000) if r.external_id == run_id]
    finally:
        manifest.close()
    if not found or found[0].report is None:
        return None
    report = dict(found[0].report)
    report.pop("documents", None)
    return report


def _status(run: FlowRunState, report: dict[str, Any] | None) -> RunStatus:
    return RunStatus(
        run_id=run.run_id,
        source=run.parameters.get("source"),
        state=run.state,
        state_name=run.state_name,
        paths=run.parameters.get("paths"),
        urls=run.parameters.get("urls"),
        report=report,
    )
