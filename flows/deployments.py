"""Every configured source as a Prefect deployment with its own cron schedule."""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from flows.ingest_flow import ingest_flow


def source_deployments(settings: Settings) -> list[Any]:
    """One `ingest/<source>` deployment per source. A source without a schedule is deployed too
    (run it from the UI or `prefect deployment run`). Runs of one deployment never overlap; a
    run that finds another source's run on the index waits for its lock, up to an hour."""
    return [
        ingest_flow.to_deployment(
            name=source.name,
            cron=source.schedule,
            parameters={"source": source.name, "wait_for_lock_s": 3600},
            concurrency_limit=1,
            tags=["sluice", f"index:{settings.index_name}", f"source:{source.type}"],
            description=f"Sync the {source.type} source '{source.name}' into index "
            f"'{settings.index_name}'.",
        )
        for source in settings.sources
    ]
