"""One source synced as several partitions that run in parallel, wherever a launcher runs them.

The parent run holds the index's run lock and decides what is decided once per source: the
listing's deletions and the mass-delete guard (a partition sees only its part, so it could not
judge a fraction of the whole). Each partition is an ordinary sync of the documents whose id
hashes to it (`Partition`), recording its own run under the parent's id, so partitions may finish
in any order and a failed one is run again alone. Deletions are applied after the partitions
(write new, then delete old), and the parent's report sums what its partitions' runs recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ingest.changes import plan_changes
from ingest.manifest import Manifest, RunRecord
from ingest.types import UNREADABLE, DocumentSource
from pipelines.cost import Cost, CpuMeter
from pipelines.ingest_sync import (
    IngestParts,
    SyncOptions,
    SyncRun,
    account_cost,
    apply_deletions,
    log,
    run_state,
    source_fingerprint,
)
from pipelines.report import DocumentOutcome, IngestReport

Launcher = Callable[[list[int], int], dict[int, bool]]
"""Runs these partitions of the parent run (its id) and says which completed; how and where
(Prefect deployments on a work pool, or this process) is the caller's."""


def sync_partitioned(
    source: DocumentSource,
    source_name: str,
    parts: IngestParts,
    manifest: Manifest,
    options: SyncOptions,
    partitions: int,
    launch: Launcher,
    attempts: int = 3,
) -> IngestReport:
    """Sync `source` as `partitions` parts through `launch`; each part that fails is launched
    again alone, up to `attempts` times in all."""
    meter = CpuMeter()
    report = IngestReport(index=parts.target.alias, source=source_name, tenant=options.tenant)
    run_id = manifest.start_run(source_name, options.external_id)
    try:
        started = time.perf_counter()
        items = source.list_items()
        skipped = source.skipped()
        plan = plan_changes(
            items,
            manifest.documents(source_name),
            source_fingerprint(parts, options),
            options.max_deleted_fraction,
            [uri for uri, reason in skipped if reason.startswith(UNREADABLE)],
        )
        pending = list(range(partitions))
        for attempt in range(1, attempts + 1):
            log.info("%s: partitions %s, attempt %d", source_name, pending, attempt)
            completed = launch(pending, run_id)
            pending = [p for p in pending if not completed.get(p)]
            if not pending:
                break
        _close_abandoned(manifest, run_id)
        apply_deletions(plan, parts.target, SyncRun(source_name, manifest, report), False)
        _sum_partitions(report, manifest.partition_runs(run_id), partitions)
        report.files_seen = len(items)
        report.skipped = [DocumentOutcome(uri, reason, 0) for uri, reason in skipped]
        report.collection = parts.target.collection
        if report.collection:
            report.points_in_index = parts.target.store.count(report.collection)
        report.seconds = round(time.perf_counter() - started, 3)
    except BaseException as error:
        manifest.finish_run(run_id, report.to_dict(), "failed", f"{type(error).__name__}: {error}")
        raise
    own = account_cost(IngestReport(index=report.index), parts, options, meter).cost
    report.cost = _sum_costs([report.cost, own])
    failure = f"partitions {pending} failed {attempts} times" if pending else ""
    state = "failed" if pending else run_state(report)
    manifest.finish_run(run_id, report.to_dict(), state, failure)
    return report


ABANDONED = "its process ended before the partition did (killed, or its machine lost)"


def _close_abandoned(manifest: Manifest, parent_run_id: int) -> None:
    """A partition's run still `running` once every launched part has ended was left by a
    process that died mid-part: recorded as failed, so no run stays `running` for ever (a
    reader on the dead process's own host already sees it `interrupted`; others could not)."""
    for run in manifest.partition_runs(parent_run_id):
        if run.state in ("running", "interrupted"):
            manifest.finish_run(run.run_id, run.report or {}, "failed", ABANDONED)


def _sum_partitions(report: IngestReport, runs: list[RunRecord], partitions: int) -> None:
    """The last run of each partition, added into the parent's report."""
    last: dict[int, RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        if run.partition is not None:
            last[run.partition] = run
    costs = []
    for index in range(partitions):
        found = last.get(index)
        part: dict[str, Any] = (found.report if found else None) or {}
        documents = part.get("documents", {})
        for name in ("new", "changed", "failed"):
            getattr(report, name).extend(DocumentOutcome(**d) for d in documents.get(name, []))
        report.quarantined.extend(documents.get("quarantined", []))
        for name in ("unchanged", "chunks", "embedded", "from_cache"):
            setattr(report, name, getattr(report, name) + part.get(name, 0))
        for stage, seconds in part.get("stage_seconds", {}).items():
            report.stage_seconds[stage] = round(report.stage_seconds.get(stage, 0) + seconds, 3)
        costs.append(Cost(**part["cost"]) if "cost" in part else Cost())
        report.partitions.append(
            {
                "partition": index,
                "run_id": found.run_id if found else None,
                "state": found.state if found else "not run",
                "runs": sum(1 for r in runs if r.partition == index),
                "new": len(documents.get("new", [])),
                "changed": len(documents.get("changed", [])),
                "unchanged": part.get("unchanged", 0),
                "failed": len(documents.get("failed", [])),
                "chunks": part.get("chunks", 0),
                "seconds": part.get("seconds", 0.0),
                "flow_run_id": found.external_id if found else None,
            }
        )
    report.cost = _sum_costs(costs)


def _sum_costs(costs: list[Cost]) -> Cost:
    if not costs:
        return Cost()
    return Cost(
        tokens_embedded=sum(c.tokens_embedded for c in costs),
        chunks=sum(c.chunks for c in costs),
        cpu_seconds=round(sum(c.cpu_seconds for c in costs), 3),
        gpu_seconds=round(sum(c.gpu_seconds for c in costs), 3),
        estimated_cost=sum(c.estimated_cost for c in costs),
        currency=costs[0].currency,
    )
