"""The sync webhook's runs started warm: `sluice deploy` claims them from the Prefect server and
runs them in its own process, on the source kept open (`composition/live_source.py`).

A run served the usual way starts a new Python process, imports the models and starts reading
workers that load the parsers: ~9 s before one changed document is read (docs/benchmarks.md,
"Freshness"). Here a run of a few documents costs their reading and embedding. The run is the
same flow run of the source's deployment, claimed the way Prefect's runner claims it (proposing
PENDING: the server grants one claimant), so the runner of the same deployment, or a worker of
its pool, runs it instead when this process is not there or is slower to claim it; a run the
deployment's concurrency limit holds back stays SCHEDULED and is claimed when it may start.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow
from prefect.runtime import flow_run as current_run
from prefect.states import Pending
from prefect.utilities.engine import propose_state_sync

from composition.live_source import KeptSources
from composition.prefect_runs import WEBHOOK_TAG
from config.settings import Settings
from flows.ingest_flow import published, requested_scope

log = logging.getLogger("sluice.webhook")

POLL_S = 1.0
"""How often the Prefect server is asked for the webhook's new runs: half of it is their mean
wait; at 0.5 s the asking cost the Prefect server 2 % of a core more while idle (measured)."""


def run_webhook_syncs(settings: Settings, kept: KeptSources, stop: threading.Event) -> None:
    """Claim and run the webhook's runs of this config's sources until `stop` is set."""
    names = [source.name for source in settings.sources]
    ingest = _warm_flow(settings, kept)
    with get_client(sync_client=True) as client:
        while not stop.wait(POLL_S):
            try:
                due = _due(client, names)
            except Exception as error:  # the server restarting: ask again next time
                log.warning("could not read the webhook's runs: %s", error)
                continue
            for run in due:
                if stop.is_set() or not _claimed(client, run):
                    continue
                try:
                    run_flow(ingest, flow_run=run)
                except Exception:  # the flow run is FAILED and says why; serve the next
                    log.exception("the webhook's run %s failed", run.id)


def _due(client: SyncPrefectClient, names: list[str]) -> list[FlowRun]:
    runs = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest"])),
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            tags=FlowRunFilterTags(all_=[WEBHOOK_TAG]),
        ),
        limit=20,
    )
    return [run for run in runs if run.parameters.get("source") in names]


def _claimed(client: SyncPrefectClient, run: FlowRun) -> bool:
    try:
        state = propose_state_sync(client, Pending(), flow_run_id=run.id)
    except Abort:  # another claimant was first
        return False
    return state.is_pending()


def _warm_flow(settings: Settings, kept: KeptSources) -> Any:
    """The `ingest` flow for the webhook's runs, on the run's source kept open. It takes the
    deployment's parameters; `partitions` only matters on a work pool, where this never runs."""

    @flow(name="ingest", log_prints=True)
    def ingest(
        source: str,
        paths: list[str] | None = None,
        urls: list[str] | None = None,
        wait_for_lock_s: float = 0.0,
        partitions: int | None = None,
    ) -> dict[str, Any]:
        print(f"run warm in the `sluice deploy` process (pid {os.getpid()})")
        warm = kept.get(source)
        scope = requested_scope(warm.config, paths, urls)
        asked_at = FlowRunContext.get().flow_run.created.timestamp()  # type: ignore[union-attr]
        report = warm.sync(
            scope, seen_at=asked_at, external_id=current_run.id, lock_wait_s=wait_for_lock_s
        )
        return published(report, settings, source, "ingest")

    return ingest
