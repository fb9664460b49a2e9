"""A partitioned ingest run the other way: the partitions as Prefect tasks on prefect-dask's
DaskTaskRunner (a local Dask cluster of worker processes) inside one flow run, for
`bench/partitioned_ingest.py --dask` to compare with flow runs on a work pool.

Run with the Sluice and Prefect settings of the deployment in the environment:

    python bench/dask_partitions.py SOURCE --partitions 4 --workers 2

Needs `pip install prefect-dask` (not a Sluice dependency: only this measurement uses it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The ingest starts parse worker processes of its own, which a daemonic Dask worker may not.
os.environ.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")

from prefect import flow, task  # noqa: E402
from prefect_dask.task_runners import DaskTaskRunner  # noqa: E402

from config.settings import Settings  # noqa: E402
from flows.ingest_flow import run_sync  # noqa: E402
from pipelines.ingest_sync import Partition  # noqa: E402


@task
def sync_partition(source: str, index: int, partitions: int, parent_run_id: int) -> int:
    settings = Settings()
    part = Partition(index, partitions, parent_run_id)
    return len(run_sync(settings, settings.source(source), partition=part).failed)


@flow(name="ingest-dask")
def ingest_on_dask(source: str, partitions: int) -> None:
    settings = Settings()
    config = settings.source(source).model_copy(update={"partitions": partitions})

    def launch(indexes: list[int], parent_run_id: int) -> dict[int, bool]:
        futures = {i: sync_partition.submit(source, i, partitions, parent_run_id) for i in indexes}
        for future in futures.values():
            future.wait()
        return {i: future.state.is_completed() for i, future in futures.items()}

    run_sync(settings, config, launch=launch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runner: Any = DaskTaskRunner(
        cluster_kwargs={"n_workers": args.workers, "threads_per_worker": 1}
    )
    ingest_on_dask.with_options(task_runner=runner)(args.source, args.partitions)


if __name__ == "__main__":
    main()
