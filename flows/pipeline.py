"""The ingest pipeline as plain functions: plan, read, chunk, embed, write, record.

Prefect flows wrap these; tests call them directly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context

from chunking.types import Chunk, Chunker
from flows.report import DocumentOutcome, IngestReport
from index.bm25 import Bm25Encoder, Bm25Params, average_length
from index.embedder import SentenceTransformerEmbedder
from index.embedding_cache import EmbeddingCache
from index.types import CollectionSpec, VectorStore
from index.versions import active_spec, collection_name, create_next_version, versions_of
from index.writer import IndexWriter, WriteStats
from ingest.changes import Candidate, ChangePlan, plan_changes
from ingest.manifest import DocumentRecord, Manifest
from ingest.reader import DocumentReader, ReadResult
from ingest.types import DocumentParser, DocumentSource, SourceItem

ProgressCallback = Callable[[str, int, int], None]
"""(stage, done, total)"""


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def ensure_collection(
    store: VectorStore,
    alias: str,
    embedder: SentenceTransformerEmbedder,
    bm25: Bm25Params,
    sample_texts: Sequence[str],
) -> CollectionSpec:
    """The collection the alias serves; the first ingest creates `alias__v1`, with BM25's average
    chunk length measured on the chunks it brings. A first version left unaliased by a crash is
    adopted rather than joined by a second."""
    spec = active_spec(store, alias)
    if spec is None and (existing := versions_of(store, alias)):
        orphan = store.collection_spec(collection_name(alias, existing[-1]))
        if orphan is not None and orphan.embedding_model == embedder.model_id:
            store.set_alias(alias, orphan.name)
            spec = orphan
    if spec is not None:
        if spec.embedding_model != embedder.model_id:
            raise ValueError(
                f"index '{alias}' is embedded with {spec.embedding_model}, "
                f"not {embedder.model_id}; "
                "re-embed the index to change its model"
            )
        return spec
    measured = Bm25Params(
        k1=bm25.k1,
        b=bm25.b,
        language=bm25.language,
        stopwords=bm25.stopwords,
        avg_doc_length=average_length(Bm25Encoder(bm25), sample_texts),
    )
    spec = create_next_version(store, alias, embedder, measured)
    store.set_alias(alias, spec.name)
    return spec


@dataclass
class IndexTarget:
    """Where chunks go: the index behind `alias`, its collection created on the first write."""

    store: VectorStore
    alias: str
    embedder: SentenceTransformerEmbedder
    bm25: Bm25Params
    cache: EmbeddingCache | None = None
    _writer: IndexWriter | None = None

    def writer(self, first_batch: Sequence[Chunk]) -> IndexWriter:
        if self._writer is None:
            texts = [c.indexed_text for c in first_batch]
            spec = ensure_collection(self.store, self.alias, self.embedder, self.bm25, texts)
            self._writer = IndexWriter(
                self.store, spec.name, self.embedder, Bm25Encoder(spec.bm25), self.cache
            )
        return self._writer

    @property
    def collection(self) -> str:
        return (
            self._writer.collection
            if self._writer
            else (self.store.resolve_alias(self.alias) or "")
        )

    @property
    def stats(self) -> WriteStats | None:
        """What this target's writer embedded and wrote; None before the first write."""
        return self._writer.stats if self._writer else None


def write_documents(
    target: IndexTarget,
    documents: Iterable[tuple[str, list[Chunk]]],
    batch_size: int = 256,
    before_write: Callable[[list[str]], None] | None = None,
    after_write: Callable[[list[str]], None] | None = None,
) -> int:
    """Embeds and upserts in batches across documents, as `documents` yields them.

    A document's older versions are retired only after all of its new chunks are written; then
    `after_write` gets its id. `before_write` gets the ids of documents whose first chunks are
    about to be written (the manifest marks them pending).
    """
    pending: list[Chunk] = []
    complete: list[tuple[str, str, int]] = []
    started: set[str] = set()
    written = 0

    def flush() -> None:
        nonlocal written
        if pending:
            fresh = list(dict.fromkeys(c.doc_id for c in pending if c.doc_id not in started))
            if before_write and fresh:
                before_write(fresh)
            started.update(fresh)
            target.writer(pending).write_chunks(pending)
            written += len(pending)
            pending.clear()
        if complete:
            writer = target.writer([])
            for doc_id, version, count in complete:
                writer.retire_other_versions(doc_id, version, count)
            if after_write:
                after_write([doc_id for doc_id, _, _ in complete])
            complete.clear()

    for doc_id, chunks in documents:
        for chunk in chunks:
            pending.append(chunk)
            if len(pending) >= batch_size:
                flush()
        complete.append((doc_id, chunks[0].doc_version, len(chunks)))
    flush()
    return written


@dataclass
class IndexingResult:
    collection: str
    points_in_index: int
    stage_seconds: dict[str, float]
    embedded: int
    from_cache: int


def index_chunks(
    chunks_by_doc: dict[str, list[Chunk]],
    embedder: SentenceTransformerEmbedder,
    store: VectorStore,
    alias: str,
    bm25: Bm25Params,
    cache: EmbeddingCache | None = None,
    progress: ProgressCallback = _no_progress,
) -> IndexingResult:
    """Write already chunked documents into the index behind `alias` (evaluation indexes)."""
    target = IndexTarget(store, alias, embedder, bm25, cache)
    # BM25's average length is measured on the whole corpus here, not only a first batch.
    target.writer([c for chunks in chunks_by_doc.values() for c in chunks])
    done = 0

    def advance(doc_ids: list[str]) -> None:
        nonlocal done
        done += len(doc_ids)
        progress("embed", done, len(chunks_by_doc))

    write_documents(target, chunks_by_doc.items(), after_write=advance)
    writer = target.writer([])
    return IndexingResult(
        collection=writer.collection,
        points_in_index=store.count(writer.collection),
        stage_seconds={
            "embed": round(writer.stats.embed_seconds, 3),
            "upsert": round(writer.stats.upsert_seconds, 3),
        },
        embedded=writer.stats.embedded,
        from_cache=writer.stats.from_cache,
    )


@dataclass
class SyncOptions:
    dry_run: bool = False
    max_deleted_fraction: float = 0.2
    parse_workers: int = 1
    """Processes that fetch and parse beside the embedding; 1 parses in this process."""
    attempts: int = 3
    backoff_s: float = 1.0
    batch_size: int = 256


@dataclass
class IngestParts:
    """Everything a sync needs besides the source; built from settings by the flows."""

    parser: DocumentParser
    chunker: Chunker
    target: IndexTarget
    config_fingerprint: Callable[[SourceItem], str]


def _read_all(
    reader: DocumentReader, candidates: list[Candidate], workers: int
) -> Iterator[ReadResult]:
    """Results as they complete; with workers > 1 they are read in other processes while the
    caller embeds what has arrived."""
    if workers <= 1 or len(candidates) <= 1:
        yield from (reader.read(c) for c in candidates)
        return
    with ProcessPoolExecutor(
        max_workers=min(workers, len(candidates)),
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(reader,),
    ) as pool:
        futures = [pool.submit(_read_in_worker, c) for c in candidates]
        for future in as_completed(futures):
            yield future.result()


_worker_reader: DocumentReader | None = None

# Parse processes yield the CPU to the embedder in the main process: embedding is the costlier
# stage, and parsing only needs to stay a batch ahead of it, which idle cycles are enough for.
PARSE_WORKER_NICENESS = 10


def _init_worker(reader: DocumentReader) -> None:
    global _worker_reader
    _worker_reader = reader
    if hasattr(os, "nice"):
        os.nice(PARSE_WORKER_NICENESS)


def _read_in_worker(candidate: Candidate) -> ReadResult:
    assert _worker_reader is not None
    return _worker_reader.read(candidate)


@dataclass
class _Run:
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
    progress: ProgressCallback = _no_progress,
) -> IngestReport:
    """Bring the index up to date with one source, doing only the work that changed.

    Unchanged documents (same cheap fingerprint and config) are not read; documents whose content
    hash proves them unchanged are not parsed; only chunks whose text is new are embedded (the
    embedding cache). The manifest row of a document moves to `indexed` only after its points are
    written and its older versions retired, so a crash at any point is repaired by the next run.
    """
    options = options or SyncOptions()
    started = time.perf_counter()
    report = IngestReport(index=parts.target.alias, source=source_name, dry_run=options.dry_run)
    items = source.list_items()
    known = manifest.documents(source_name)
    plan = plan_changes(items, known, parts.config_fingerprint, options.max_deleted_fraction)
    report.files_seen = len(items)
    report.stage_seconds["list"] = round(time.perf_counter() - started, 3)
    run_id = None if options.dry_run else manifest.start_run(source_name)
    run = _Run(source_name, None if options.dry_run else manifest, report)
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
        for result in _read_all(reader, plan.candidates, options.parse_workers):
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
            chunks = _chunks_of(result, parts.chunker, source_name)
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
        run.manifest.update_fingerprints(touched)
    report.stage_seconds["read_parse"] = round(read_seconds, 3)
    _apply_deletions(plan, parts.target, run, options.dry_run)
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
    if run_id is not None:
        manifest.finish_run(run_id, report.to_dict())
    return report


def _chunks_of(result: ReadResult, chunker: Chunker, source_name: str) -> list[Chunk]:
    if result.document is None:
        return []
    try:
        chunks = chunker.run(result.document, result.candidate.config_fingerprint)
    except Exception as error:  # a chunker bug is this document's failure, not the run's
        result.error = f"chunking failed: {type(error).__name__}: {error}"
        return []
    if not chunks:
        result.error = "no text left after chunking"
    for chunk in chunks:
        chunk.source = source_name
    return chunks


def _fail(run: _Run, result: ReadResult) -> None:
    """A document that could not be read is quarantined; its older indexed version stays."""
    run.report.failed.append(DocumentOutcome(result.candidate.item.uri, result.error, 0))
    if run.manifest is None:
        return
    before = result.candidate.record
    run.manifest.put_many(
        [
            replace(
                before or run.record(result, [], "quarantined"),
                fingerprint=result.candidate.item.fingerprint,
                status="quarantined",
                attempts=(before.attempts if before else 0) + result.attempts,
                last_error=result.error,
                updated_at=0.0,
            )
        ]
    )


def _apply_deletions(plan: ChangePlan, target: IndexTarget, run: _Run, dry_run: bool) -> None:
    run.report.deletions_held = plan.deletions_held
    if plan.deletions_held or not plan.deleted:
        return
    run.report.deleted = list(plan.deleted)
    if dry_run:
        return
    started = time.perf_counter()
    if target.collection:
        target.writer([]).delete_documents(plan.deleted)
    if run.manifest:
        run.manifest.remove(plan.deleted)
    run.report.stage_seconds["delete"] = round(time.perf_counter() - started, 3)
