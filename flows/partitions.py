"""Partitions of a source run as Prefect flow runs of the source's partition deployment, on
whichever workers of its pool are free: each a child of the parent's flow run in the UI.

Chosen over a task runner inside one run (prefect-dask, prefect-ray): partitions then run on
the workers Sluice already has (any machine that runs `prefect worker start --pool`), each in a
process of its own that Prefect tracks, retries and shows, with no second cluster (Dask or Ray)
to deploy and keep alive; a task runner's tasks all run where its cluster is. docs/scaling.md
has the measured overhead.
"""

from __future__ import annotations

import time

from pipelines.partitioned_sync import Launcher

WAIT_S = 24 * 3600
"""How long the parent waits for a partition's flow run to end."""
POLL_S = 2.0


def partition_deployment(source: str) -> str:
    """The deployment that runs one partition of `source`: beside `ingest/<source>`, without
    its one-run-at-a-time limit, so the parts run at once."""
    return f"{source}-partitions"


def launch_on_pool(source: str, partitions: int) -> Launcher:
    def launch(indexes: list[int], parent_run_id: int) -> dict[int, bool]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment

        started: dict[int, FlowRun] = {
            index: run_deployment(  # type: ignore[misc]
                f"ingest/{partition_deployment(source)}",
                parameters={
                    "source": source,
                    "partition": index,
                    "partitions": partitions,
                    "parent_run_id": parent_run_id,
                },
                flow_run_name=f"{source}-part-{index}-of-{partitions}",
                timeout=0,  # all start at once; waited for below
                as_subflow=True,
            )
            for index in indexes
        }
        ended: dict[int, bool] = {}
        deadline = time.monotonic() + WAIT_S
        with get_client(sync_client=True) as client:
            while len(ended) < len(started) and time.monotonic() < deadline:
                for index, run in started.items():
                    state = client.read_flow_run(run.id).state
                    if index not in ended and state is not None and state.is_final():
                        ended[index] = state.is_completed()
                time.sleep(POLL_S)
        return ended

    return launch
