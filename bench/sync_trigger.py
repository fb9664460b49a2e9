"""Which Prefect mechanism starts a sync webhook's run sooner: a flow run of the source's
deployment created directly (what Sluice does), or an event that an automation turns into
the same flow run (Prefect's events and automations).

    .venv/bin/python bench/sync_trigger.py [--times 30]

Starts a Prefect server of its own (SQLite, as `sluice deploy` runs one), registers a
deployment that nothing serves, and an automation whose trigger is an event `sluice.sync`
on the resource `sluice.source.hook` and whose action runs that deployment. Then, in turns:
the time from the call until the flow run exists (polled every 20 ms), for `--times` direct
creations and as many events. What follows (claiming and running the flow run) is the same
for both, so this difference is all that the choice changes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from uuid import UUID


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--times", type=int, default=30)
    args = parser.parse_args()
    from flows.local_server import ensure_local_server, stop_local_server

    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        url = ensure_local_server(home, 600)
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: url}):
                direct, by_event = measure(args.times)
        finally:
            stop_local_server(home)
    print(f"direct create_flow_run: {_stats(direct)}")
    print(f"event -> automation -> flow run: {_stats(by_event)}")
    print(f"ratio of medians: {statistics.median(by_event) / statistics.median(direct):.1f}x")


def measure(times: int) -> tuple[list[float], list[float]]:
    from prefect.automations import Automation, EventTrigger, Posture, RunDeployment
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.schemas.events import ResourceSpecification

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("ingest-trigger-bench")
        deployment_id = client.create_deployment(flow_id=flow_id, name="hook")
        Automation(
            name="sync hook",
            trigger=EventTrigger(
                expect={"sluice.sync"},
                match=ResourceSpecification({"prefect.resource.id": "sluice.source.hook"}),
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=deployment_id,
                    parameters=None,
                    job_variables=None,
                )
            ],
        ).create()
        time.sleep(3)  # the automation is loaded by the server's triggers service

        def runs() -> int:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            return len(found)

        def until_one_more(before: int, started: float) -> float:
            while runs() == before:
                if time.perf_counter() - started > 60:
                    raise TimeoutError("no flow run within 60 s")
                time.sleep(0.02)
            return time.perf_counter() - started

        direct: list[float] = []
        by_event: list[float] = []
        for _ in range(times):
            before = runs()
            started = time.perf_counter()
            client.create_flow_run_from_deployment(UUID(str(deployment_id)))
            direct.append(until_one_more(before, started))
            before = runs()
            started = time.perf_counter()
            emit_event(event="sluice.sync", resource={"prefect.resource.id": "sluice.source.hook"})
            by_event.append(until_one_more(before, started))
    return direct, by_event


def _stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"n {len(values)}, p50 {statistics.median(values) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
