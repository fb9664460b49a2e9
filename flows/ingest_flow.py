"""The Prefect ingest flow: thin orchestration of `pipelines.ingest_sync.sync_source`."""

from __future__ import annotations

import posixpath
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed

from composition.components import Components
from composition.tracing import configure_tracing, flush_tracing, record_stages
from config.settings import Settings
from config.sources import LocalFolderConfig, S3Config, SourceConfig
from flows.artifacts import artifact_key
from flows.partitions import launch_on_pool
from ingest.types import Scope
from pipelines.ingest_sync import Partition, sync_source
from pipelines.live_sync import scope_of
from pipelines.partitioned_sync import Launcher, sync_partitioned
from pipelines.progress import report_progress
from pipelines.report import IngestReport


def run_sync(
    settings: Settings,
    config: SourceConfig,
    dry_run: bool = False,
    wait_for_lock_s: float = 0.0,
    external_id: str | None = None,
    partition: Partition | None = None,
    launch: Launcher | None = None,
    scope: Scope | None = None,
) -> IngestReport:
    """Plain-Python sync of one source into the configured index, under the index's run lock.
    `external_id`: the flow run's id, kept in the index's run history. `partition`: one part of
    a partitioned run, under its parent's lock; `launch`: this run is the parent of
    `config.partitions` parts that `launch` runs."""
    parts = Components(settings)
    source = parts.source(config)
    configure_tracing(settings.tracing, "sluice-ingest")
    started_ns = time.time_ns()
    options = replace(
        parts.sync_options(dry_run),
        external_id=external_id,
        tenant=config.tenant,
        cost_rates=parts.cost_rates(),
        partition=partition,
        scope=scope,
    )
    with nullcontext() if partition else parts.run_lock(wait_for_lock_s):
        store = parts.store()
        manifest = parts.manifest()
        ingest_parts = parts.ingest_parts(store, dry_run=dry_run)
        try:
            if launch is not None:
                report = sync_partitioned(
                    source, config.name, ingest_parts, manifest, options, config.partitions, launch
                )
            else:
                report = sync_source(
                    source, config.name, ingest_parts, manifest, options, report_progress
                )
        finally:
            manifest.close()
            store.close()
    record_stages(
        "ingest",
        started_ns,
        report.stage_seconds,
        {
            "sluice.index": report.index,
            "sluice.source": report.source,
            "sluice.collection": report.collection,
            "sluice.new": len(report.new),
            "sluice.changed": len(report.changed),
            "sluice.failed": len(report.failed),
            "sluice.chunks": report.chunks,
            "sluice.embedded": report.embedded,
            "sluice.cpu_seconds": report.cost.cpu_seconds,
            "sluice.estimated_cost": report.cost.estimated_cost,
        },
        sequential=False,
    )
    flush_tracing()
    return report


def requested_scope(
    config: SourceConfig, paths: list[str] | None, urls: list[str] | None
) -> Scope | None:
    """What a sync webhook's call names: `paths` of a folder or S3 source, `urls` of an http
    source (exactly these; the source requests only those it lists); None: the whole source."""
    if urls:
        return Scope(frozenset(urls))
    return scope_within(config, paths) if paths else None


def scope_within(config: SourceConfig, paths: list[str]) -> Scope:
    """Paths relative to a local folder's root, or keys below an S3 source's prefix; one that
    leads outside the source lists nothing."""
    if isinstance(config, LocalFolderConfig):
        root = config.path.resolve()
        return scope_of(root / path.lstrip("/") for path in paths)
    if isinstance(config, S3Config):
        keys = [posixpath.normpath(config.prefix + path.lstrip("/")) for path in paths]
        return Scope.of(frozenset(f"s3://{config.bucket}/{key}" for key in keys))
    raise ValueError(f"source '{config.name}' ({config.type}) syncs whole, not by paths")


@flow(name="ingest", log_prints=True)
def ingest_flow(
    source: str | None = None,
    path: str | None = None,
    dry_run: bool = False,
    wait_for_lock_s: float = 0.0,
    settings: Settings | None = None,
    tenant: str | None = None,
    partitions: int | None = None,
    partition: int | None = None,
    parent_run_id: int | None = None,
    paths: list[str] | None = None,
    urls: list[str] | None = None,
) -> dict[str, Any]:
    """Sync one configured source (by name) or a folder (by path) into the index; returns the
    run report, also published as a Markdown artifact. On a work pool a source's deployment
    passes `partitions`: this run then runs that many partition runs (`partition`, under
    `parent_run_id`) of the source's partition deployment, and sums them. `paths` or `urls`:
    only these documents or folders of a folder or S3 source, or pages of an http source (a sync
    webhook's call)."""
    settings = settings or Settings()
    if (source is None) == (path is None):
        raise ValueError("give exactly one of a source name or a path")
    config = (
        settings.source(source)
        if source
        else Components(settings).folder_source(Path(str(path)), tenant)
    )
    if partition is not None and partitions and parent_run_id is not None:
        part = Partition(partition, partitions, parent_run_id)
        report = run_sync(settings, config, external_id=flow_run.id, partition=part)
    elif partitions and partitions > 1 and not dry_run:
        config = config.model_copy(update={"partitions": partitions})
        launch = launch_on_pool(config.name, partitions)
        report = run_sync(settings, config, False, wait_for_lock_s, flow_run.id, launch=launch)
    else:
        scope = requested_scope(config, paths, urls)
        report = run_sync(settings, config, dry_run, wait_for_lock_s, flow_run.id, scope=scope)
    kind = "ingest-plan" if dry_run else "ingest" if partition is None else "ingest-partition"
    return published(report, settings, config.name, kind)


def published(report: IngestReport, settings: Settings, source: str, kind: str) -> dict[str, Any]:
    """The run's report as a Markdown artifact and a printed summary; the flow's result."""
    create_markdown_artifact(
        markdown=report.to_markdown(),
        key=artifact_key(kind, settings, source),
        description=f"{'dry run of ' if kind == 'ingest-plan' else ''}{source}",
    )
    summary = (
        f"{source}: {len(report.new)} new, {len(report.changed)} changed, "
        f"{report.unchanged} unchanged, {len(report.deleted)} deleted, {len(report.failed)} failed"
    )
    print(summary)
    return final_state(report.to_dict(), summary)  # type: ignore[return-value]


def final_state(report: dict[str, Any], summary: str) -> dict[str, Any] | State:
    """A run that held deletions or failed documents completes under a name that says so
    (`DeletionsHeld`, `CompletedWithFailures`; type COMPLETED, so nothing retries it), and the
    CLI exits with the matching code (README, "Exit codes"). Calling the flow still returns the
    report."""
    if report["deletions_held"]:
        return Completed(name="DeletionsHeld", message=report["deletions_held"], data=report)
    if report["failed"]:
        return Completed(name="CompletedWithFailures", message=summary, data=report)
    return report
