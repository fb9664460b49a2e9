"""The ingest pipeline as plain functions: list, parse, chunk, embed, write.

Prefect flows wrap these; tests call them directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chunking.types import Chunk, Chunker
from flows.report import FailedDocument, IngestReport
from index.bm25 import Bm25Encoder, Bm25Params, average_length
from index.embedder import SentenceTransformerEmbedder
from index.embedding_cache import EmbeddingCache
from index.types import CollectionSpec, VectorStore
from index.versions import active_spec, create_next_version
from index.writer import IndexWriter
from ingest.types import DocumentParser, ParseError, SourceFile

ProgressCallback = Callable[[str, int, int], None]
"""(stage, done, total)"""


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class ChunkedDocuments:
    chunks_by_doc: dict[str, list[Chunk]] = field(default_factory=dict)
    failed: list[FailedDocument] = field(default_factory=list)


def parse_and_chunk(
    files: Sequence[SourceFile],
    parser: DocumentParser,
    chunker: Chunker,
    source_name: str,
    config_fingerprint: str = "",
    progress: ProgressCallback = _no_progress,
) -> ChunkedDocuments:
    """Every file ends up chunked or in `failed` with a reason; one bad file never stops the run."""
    out = ChunkedDocuments()
    for done, source in enumerate(files, start=1):
        try:
            document = parser.parse(source)
            chunks = chunker.run(document, config_fingerprint)
            if not chunks:
                raise ParseError("no text left after chunking")
        except ParseError as error:
            out.failed.append(FailedDocument(source.uri, str(error)))
        except Exception as error:  # a parser bug must not end the run either
            out.failed.append(
                FailedDocument(source.uri, f"unexpected {type(error).__name__}: {error}")
            )
        else:
            for chunk in chunks:
                chunk.source = source_name
            out.chunks_by_doc[source.doc_id] = chunks
        progress("parse", done, len(files))
    return out


def ensure_collection(
    store: VectorStore,
    alias: str,
    embedder: SentenceTransformerEmbedder,
    bm25: Bm25Params,
    sample_texts: Sequence[str],
) -> CollectionSpec:
    """The collection the alias serves; the first ingest creates `alias__v1`, with BM25's average
    chunk length measured on the chunks it brings."""
    spec = active_spec(store, alias)
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
    spec = create_next_version(store, alias, embedder.model_id, embedder.dimension, measured)
    store.set_alias(alias, spec.name)
    return spec


def write_documents(
    writer: IndexWriter,
    chunks_by_doc: dict[str, list[Chunk]],
    batch_size: int = 256,
    progress: ProgressCallback = _no_progress,
) -> int:
    """Embeds and upserts in batches across documents; a document's older versions are retired
    only after all its new chunks are written."""
    total = sum(len(chunks) for chunks in chunks_by_doc.values())
    pending: list[Chunk] = []
    waiting: list[tuple[str, str]] = []
    written = 0

    def flush() -> None:
        nonlocal written
        writer.write_chunks(pending)
        written += len(pending)
        pending.clear()
        for doc_id, version in waiting:
            writer.retire_other_versions(doc_id, version)
        waiting.clear()
        progress("embed", written, total)

    for doc_id, chunks in chunks_by_doc.items():
        for chunk in chunks:
            pending.append(chunk)
            if len(pending) >= batch_size:
                flush()
        waiting.append((doc_id, chunks[0].doc_version))
    if pending or waiting:
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
    """Write chunked documents into the index behind `alias`, creating its first version."""
    all_texts = [c.indexed_text for chunks in chunks_by_doc.values() for c in chunks]
    spec = ensure_collection(store, alias, embedder, bm25, all_texts)
    writer = IndexWriter(store, spec.name, embedder, Bm25Encoder(spec.bm25), cache)
    write_documents(writer, chunks_by_doc, progress=progress)
    return IndexingResult(
        collection=spec.name,
        points_in_index=store.count(spec.name),
        stage_seconds={
            "embed": round(writer.stats.embed_seconds, 3),
            "upsert": round(writer.stats.upsert_seconds, 3),
        },
        embedded=writer.stats.embedded,
        from_cache=writer.stats.from_cache,
    )


def run_ingest(
    files: Sequence[SourceFile],
    parser: DocumentParser,
    chunker: Chunker,
    embedder: SentenceTransformerEmbedder,
    store: VectorStore,
    alias: str,
    bm25: Bm25Params,
    source_name: str,
    config_fingerprint: str = "",
    cache: EmbeddingCache | None = None,
    progress: ProgressCallback = _no_progress,
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(index=alias, files_seen=len(files))
    chunked = parse_and_chunk(files, parser, chunker, source_name, config_fingerprint, progress)
    parsed_at = time.perf_counter()
    report.parsed = len(chunked.chunks_by_doc)
    report.failed = chunked.failed
    report.chunks = sum(len(c) for c in chunked.chunks_by_doc.values())
    result = index_chunks(chunked.chunks_by_doc, embedder, store, alias, bm25, cache, progress)
    report.collection = result.collection
    report.points_in_index = result.points_in_index
    report.embedded = result.embedded
    report.from_cache = result.from_cache
    report.stage_seconds = {"parse_chunk": round(parsed_at - started, 3), **result.stage_seconds}
    report.seconds = round(time.perf_counter() - started, 3)
    return report
