"""One source synced into one index, doing only the work that changed: plan, read, chunk,
embed, write, record.

The Prefect ingest flow runs `sync_source`; tests call it directly.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from chunking.ids import document_origin
from chunking.types import Chunk, Chunker
from config.sources import DEFAULT_TENANT
from index.write.target import IndexTarget, write_documents
from ingest.changes import ChangePlan, plan_changes
from ingest.manifest import DocumentRecord, Manifest, RunState
from ingest.reader import DocumentReader, ReadResult
from ingest.types import (
    UNREADABLE,
    DocumentParser,
    DocumentSource,
    ListsScope,
    Scope,
    SourceItem,
    readable,
)
from pipelines.cost import DEFAULT_RATES, Cost, CostRates, CpuMeter, gpu_seconds
from pipelines.document_stream import NO_BUDGET, ReadBudget, ReadPool, read_documents
from pipelines.progress import ProgressCallback, no_progress
from pipelines.report import DocumentOutcome, IngestReport

log = logging.getLogger("sluice.ingest")
"""Records reach the flow run's log in Prefect (`sluice.*` loggers are sent at INFO)."""


@dataclass
class SyncOptions:
    dry_run: bool = False
    max_deleted_fraction: float = 0.2
    parse_workers: int = 1
    """Processes that fetch and parse beside the embedding."""
    read_budget: ReadBudget = NO_BUDGET
    """Time and memory one document's read may take; with a budget, reading always runs in
    worker processes (one at least), so that a read past it can be stopped."""
    attempts: int = 3
    backoff_s: float = 1.0
    batch_size: int = 256
    external_id: str | None = None
    """The orchestrator's id for this run (a Prefect flow run id), kept in the run history."""
    tenant: str = DEFAULT_TENANT
    """Whose documents the source holds; every chunk carries it."""
    cost_rates: CostRates = DEFAULT_RATES
    """What the run's cost estimate charges for a CPU-hour and a GPU-hour."""
    partition: Partition | None = None
    """One part of a source's listing, synced beside the other parts under a parent run that
    decides the deletions (pipelines/partitioned_sync.py)."""
    scope: Scope | None = None
    """Only these paths of a live source, listed alone (pipelines/live_sync.py)."""
    seen_at: float | None = None
    """Of a live run: when its changes were seen (`time.time()`), for its lag."""
    read_pool: ReadPool | None = None
    """Reading workers kept between runs (a live source's); else each run starts its own."""


@dataclass(frozen=True)
class Partition:
    index: int
    count: int
    parent_run_id: int

    def holds(self, doc_id: str) -> bool:
        return partition_of(doc_id, self.count) == self.index


def partition_of(doc_id: str, count: int) -> int:
    """A stable hash of the document id (the same in every process, unlike `hash()`): a
    document stays in its partition from run to run, so each partition's manifest rows are its
    own."""
    digest = hashlib.blake2b(doc_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass
class IngestParts:
    """Everything a sync needs besides the source; built from settings by the flows."""

    parser: DocumentParser
    chunker: Chunker
    target: IndexTarget
    config_fingerprint: Callable[[SourceItem], str]


@dataclass
class SyncRun:
    """The bookkeeping of one sync while it streams."""

    source_name: str
    manifest: Manifest | None
    report: IngestReport
    versions: dict[str, tuple[ReadResult, list[Chunk]]] = field(default_factory=dict)

    def record(self, result: ReadResult, chunks: list[Chunk], status: str) -> DocumentRecord:
        item = result.candidate.item
        return DocumentRecord(
            doc_id=item.uri,
            source=self.source_name,
            fingerprint=item.fingerprint,
            content_hash=result.content_hash,
            config_fingerprint=result.candidate.config_fingerprint,
            doc_version=chunks[0].doc_version if chunks else "",
            chunks=len(chunks),
            status=status,  # type: ignore[arg-type]
            attempts=result.attempts,
            last_error=result.error,
        )

    def mark_pending(self, doc_ids: list[str]) -> None:
        if self.manifest:
            self.manifest.put_many(
                [self.record(*self.versions[d], status="pending") for d in doc_ids]
            )

    def mark_indexed(self, doc_ids: list[str]) -> None:
        if self.manifest:
            self.manifest.put_many(
                [self.record(*self.versions[d], status="indexed") for d in doc_ids]
            )
        for doc_id in doc_ids:
            self.report_written(*self.versions.pop(doc_id))

    def report_written(self, result: ReadResult, chunks: list[Chunk]) -> None:
        """A new or changed document, written (or, in a dry run, that would be)."""
        bucket = self.report.new if result.candidate.reason == "new" else self.report.changed
        bucket.append(
            DocumentOutcome(result.candidate.item.uri, result.candidate.reason, len(chunks))
        )


def sync_source(
    source: DocumentSource,
    source_name: str,
    parts: IngestParts,
    manifest: Manifest,
    options: SyncOptions | None = None,
    progress: ProgressCallback = no_progress,
) -> IngestReport:
    """Bring the index up to date with one source, doing only the work that changed.

    Unchanged documents (same cheap fingerprint and config) are not read; documents whose content
    hash proves them unchanged are not parsed; only chunks whose text is new are embedded (the
    embedding cache). The manifest row of a document moves to `indexed` only after its points are
    written and its older versions retired, so a crash at any point is repaired by the next run.
    """
    options = options or SyncOptions()
    meter = CpuMeter()
    report = IngestReport(
        index=parts.target.alias,
        source=source_name,
        tenant=options.tenant,
        dry_run=options.dry_run,
    )
    if options.dry_run:  # a plan writes nothing, the run history included
        _sync(source, source_name, parts, manifest, options, progress, report)
        return account_cost(report, parts, options, meter)
    part = options.partition
    run_id = manifest.start_run(
        source_name,
        options.external_id,
        part.parent_run_id if part else None,
        part.index if part else None,
    )
    try:
        _sync(source, source_name, parts, manifest, options, progress, report)
    except BaseException as error:
        state: RunState = "failed" if isinstance(error, Exception) else "interrupted"
        account_cost(report, parts, options, meter)
        manifest.finish_run(run_id, report.to_dict(), state, f"{type(error).__name__}: {error}")
        raise
    account_cost(report, parts, options, meter)
    manifest.finish_run(run_id, report.to_dict(), run_state(report))
    return report


def account_cost(
    report: IngestReport, parts: IngestParts, options: SyncOptions, meter: CpuMeter
) -> IngestReport:
    """The run's cost: CPU seconds of this process and its parse workers, the embed stage's
    seconds as GPU seconds where the model ran on a GPU, and the tokens of what was embedded."""
    stats = parts.target.stats
    report.cost = Cost.of(
        options.cost_rates,
        meter.seconds(),
        gpu_seconds(parts.target.embedder, stats.embedded, stats.embed_seconds) if stats else 0.0,
        stats.tokens_embedded if stats else 0,
        report.chunks,
    )
    return report


def source_fingerprint(parts: IngestParts, options: SyncOptions) -> Callable[[SourceItem], str]:
    """A source's tenant is part of what its chunks are: a new tenant rewrites its documents.
    The default tenant adds nothing, so indexes from before tenants are not rewritten."""
    if options.tenant == DEFAULT_TENANT:
        return parts.config_fingerprint
    return lambda item: f"{parts.config_fingerprint(item)}|tenant={options.tenant}"


def run_state(report: IngestReport) -> RunState:
    """Deletions held outrank failed documents, as in the CLI's exit codes."""
    if report.deletions_held:
        return "deletions_held"
    return "completed_with_failures" if report.failed else "completed"


def _sync(
    source: DocumentSource,
    source_name: str,
    parts: IngestParts,
    manifest: Manifest,
    options: SyncOptions,
    progress: ProgressCallback,
    report: IngestReport,
) -> IngestReport:
    started = time.perf_counter()
    known = manifest.documents(source_name)
    population = len(known)  # what the delete guard weighs deletions against
    if (scope := options.scope) is not None:
        if not isinstance(source, ListsScope):
            raise TypeError(f"{type(source).__name__} cannot list only what changed")
        items = source.list_scope(scope)
        known = {doc_id: row for doc_id, row in known.items() if scope.holds(doc_id)}
    else:
        items = source.list_items()
    skipped = source.skipped()
    if (part := options.partition) is not None:  # the parent reports what was skipped
        items = [item for item in items if part.holds(item.uri)]
        known = {doc_id: row for doc_id, row in known.items() if part.holds(doc_id)}
        skipped = []
    unreadable = [uri for uri, reason in skipped if reason.startswith(UNREADABLE)]
    fingerprint = source_fingerprint(parts, options)
    plan = plan_changes(
        items, known, fingerprint, options.max_deleted_fraction, unreadable, population
    )
    report.files_seen = len(items)
    for uri, reason in skipped:
        log.warning("%s skipped: %s", uri, reason)
        report.skipped.append(DocumentOutcome(uri, reason, 0))
    report.stage_seconds["list"] = round(time.perf_counter() - started, 3)
    log.info(
        "%s: %d listed; to read %d, unchanged %d, to delete %d, quarantined %d%s",
        source_name,
        len(items),
        len(plan.candidates),
        len(plan.unchanged),
        len(plan.deleted),
        len(plan.quarantined),
        f"; deletions held: {plan.deletions_held}" if plan.deletions_held else "",
    )
    run = SyncRun(source_name, None if options.dry_run else manifest, report)
    if plan.candidates and not options.dry_run:
        # A model that cannot load fails the run here, not each document while chunking it;
        # a run with nothing to read never loads it.
        parts.target.embedder.warm_up()
    report.unchanged = len(plan.unchanged)
    report.quarantined = [i.uri for i in plan.quarantined]

    reader = DocumentReader(
        source, parts.parser, options.attempts, options.backoff_s, parse=not options.dry_run
    )
    read_seconds = 0.0
    touched: list[tuple[str, str]] = []

    def chunked_documents() -> Iterator[tuple[str, list[Chunk]]]:
        nonlocal read_seconds
        done = 0
        results = (
            options.read_pool.read(reader, plan.candidates)
            if options.read_pool
            else read_documents(reader, plan.candidates, options.parse_workers, options.read_budget)
        )
        for result in results:
            done += 1
            progress("read", done, len(plan.candidates))
            read_seconds += result.seconds
            uri = result.candidate.item.uri
            if result.unchanged:
                report.unchanged += 1
                touched.append((uri, result.candidate.item.fingerprint))
                continue
            if options.dry_run and not result.error:
                run.report_written(result, [])
                continue
            chunks = _chunks_of(result, parts.chunker, source_name, options.tenant)
            if result.error:
                _fail(run, result)
                continue
            run.versions[uri] = (result, chunks)
            report.chunks += len(chunks)
            yield uri, chunks

    write_documents(
        parts.target,
        chunked_documents(),
        options.batch_size,
        before_write=run.mark_pending,
        after_write=run.mark_indexed,
    )
    if run.manifest and touched:
        run.manifest.update_fingerprints(source_name, touched)
    report.stage_seconds["read_parse"] = round(read_seconds, 3)
    if options.partition is None:  # a partitioned run's parent deletes, once, for all parts
        apply_deletions(plan, parts.target, run, options.dry_run)
    stats = parts.target.stats
    if stats is not None:
        report.embedded = stats.embedded
        report.from_cache = stats.from_cache
        report.stage_seconds["embed"] = round(stats.embed_seconds, 3)
        report.stage_seconds["upsert"] = round(stats.upsert_seconds, 3)
    report.collection = parts.target.collection
    if report.collection:
        report.points_in_index = parts.target.store.count(report.collection)
    report.seconds = round(time.perf_counter() - started, 3)
    report.live = options.scope is not None
    if options.seen_at is not None:
        report.lag_s = round(time.time() - options.seen_at, 3)
    log.info(
        "%s: %d chunks written (%d embedded, %d from cache), %d points in %s, %.1f s",
        source_name,
        report.chunks,
        report.embedded,
        report.from_cache,
        report.points_in_index,
        report.collection or "no collection yet",
        report.seconds,
    )
    return report


def _chunks_of(result: ReadResult, chunker: Chunker, source_name: str, tenant: str) -> list[Chunk]:
    if result.document is None:
        return []
    try:
        chunks = chunker.run(
            result.document,
            result.candidate.config_fingerprint,
            document_origin(source_name, tenant),
        )
    except Exception as error:  # a chunker bug is this document's failure, not the run's
        result.error = f"chunking failed: {type(error).__name__}: {error}"
        return []
    if not chunks:
        result.error = "no text left after chunking"
    for chunk in chunks:
        chunk.source = source_name
        chunk.tenant = tenant
        chunk.path = readable(result.candidate.item.name)
        chunk.metadata = result.document.source.metadata
    return chunks


def _fail(run: SyncRun, result: ReadResult) -> None:
    """A document that could not be read is quarantined; its older indexed version stays."""
    log.warning("%s failed: %s", result.candidate.item.uri, result.error)
    run.report.failed.append(DocumentOutcome(result.candidate.item.uri, result.error, 0))
    if run.manifest is None:
        return
    before = result.candidate.record
    run.manifest.put_many(
        [
            replace(
                before or run.record(result, [], "quarantined"),
                fingerprint=result.candidate.item.fingerprint,
                config_fingerprint=result.candidate.config_fingerprint,
                status="quarantined",
                attempts=(before.attempts if before else 0) + result.attempts,
                last_error=result.error,
                updated_at=0.0,
            )
        ]
    )


def apply_deletions(plan: ChangePlan, target: IndexTarget, run: SyncRun, dry_run: bool) -> None:
    run.report.deletions_held = plan.deletions_held
    if plan.deletions_held or not plan.deleted:
        return
    run.report.deleted = list(plan.deleted)
    if dry_run:
        return
    started = time.perf_counter()
    if target.collection:
        target.writer([]).delete_documents(plan.deleted, run.source_name)
    if run.manifest:
        run.manifest.remove(run.source_name, plan.deleted)
    run.report.stage_seconds["delete"] = round(time.perf_counter() - started, 3)
