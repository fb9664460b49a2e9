"""Every configured source as a Prefect deployment with its own cron schedule: served by the
`sluice deploy` process itself, or registered on a work pool whose workers run them."""

from __future__ import annotations

import os
from typing import Any

from config.settings import Settings
from flows.ingest_flow import ingest_flow
from flows.partitions import partition_deployment

SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "STATE_URL")
"""Settings a work pool's job is not given (Prefect stores job variables in its database): a
worker's own environment supplies them."""


def source_deployments(settings: Settings, on_work_pool: bool = False) -> list[Any]:
    """One `ingest/<source>` deployment per source. A source without a schedule is deployed too
    (run it from the UI or `prefect deployment run`). Runs of one deployment never overlap; a
    run that finds another source's run on the index waits for its lock, up to an hour.

    `on_work_pool`: for workers started anywhere Sluice is installed: the flow is found by
    its module path, and each run gets the deploying shell's non-secret `SLUICE_*` settings,
    with the data dir and config file as absolute paths."""
    extra: dict[str, Any] = {}
    if on_work_pool:
        from prefect.types.entrypoint import EntrypointType

        extra = {
            "entrypoint_type": EntrypointType.MODULE_PATH,
            "job_variables": {"env": job_environment(settings)},
        }
    deployments = []
    for source in settings.sources:
        tags = ["sluice", f"index:{settings.index_name}", f"source:{source.type}"]
        partitioned = on_work_pool and source.partitions > 1
        deployments.append(
            ingest_flow.to_deployment(
                name=source.name,
                cron=source.schedule,
                parameters={
                    "source": source.name,
                    "wait_for_lock_s": 3600,
                    **({"partitions": source.partitions} if partitioned else {}),
                },
                concurrency_limit=1,
                tags=tags,
                description=f"Sync the {source.type} source '{source.name}' into index "
                f"'{settings.index_name}'"
                + (f" as {source.partitions} partitions." if partitioned else "."),
                **extra,
            )
        )
        if partitioned:  # the parts of its runs: no schedule, no one-at-a-time limit
            deployments.append(
                ingest_flow.to_deployment(
                    name=partition_deployment(source.name),
                    parameters={"source": source.name},
                    tags=[*tags, "partition"],
                    description=f"One partition of a run of '{source.name}' (started by it).",
                    **extra,
                )
            )
    return deployments


def job_environment(settings: Settings) -> dict[str, str]:
    """What a worker's run needs to find the same index: this shell's `SLUICE_*` settings
    without secrets, the data dir and the config file made absolute."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("SLUICE_") and not any(word in name for word in SECRET_WORDS)
    }
    env["SLUICE_DATA_DIR"] = str(settings.data_dir.resolve())
    env["SLUICE_INDEX_NAME"] = settings.index_name
    if "SLUICE_CONFIG_FILE" in env:
        env["SLUICE_CONFIG_FILE"] = str(os.path.abspath(env["SLUICE_CONFIG_FILE"]))
    return env


def register_on_work_pool(settings: Settings, pool: str) -> list[str]:
    """Every source's deployment on `pool` (a process pool is made if there is none); their
    names. Nothing runs here: `prefect worker start --pool POOL` runs them."""
    from prefect import deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
    deploy(
        *source_deployments(settings, on_work_pool=True),
        work_pool_name=pool,
        build=False,
        push=False,
        print_next_steps_message=False,
        ignore_warnings=True,
    )
    return [f"ingest/{d.name}" for d in source_deployments(settings, on_work_pool=True)]
