"""Where chunks go: the index behind an alias, its first collection version created on demand.

`write_documents` streams documents' chunks into it in batches across documents and retires a
document's older versions only once all of its new chunks are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

from chunking.types import Chunk
from config.sources import DEFAULT_TENANT
from index.bm25.encoder import Bm25Encoder, average_length
from index.contracts import Bm25Params, CollectionSpec, Embedder, VectorQuantization, VectorStore
from index.models.catalog import canonical_model_id
from index.versions import active_spec, collection_name, create_next_version, versions_of
from index.write.embedding_cache import EmbeddingCache
from index.write.writer import IndexWriter, WriteStats


def ensure_collection(
    store: VectorStore,
    alias: str,
    embedder: Embedder,
    bm25: Bm25Params,
    sample: Sequence[Chunk],
    vector_quantization: VectorQuantization = "none",
) -> CollectionSpec:
    """The collection the alias serves; the first ingest creates `alias__v1`, with BM25's average
    chunk length measured on the chunks it brings. A first version left unaliased by a crash is
    adopted rather than joined by a second. `vector_quantization` applies to a new collection
    only: an existing one keeps its storage until a re-embed builds the next version."""
    spec = active_spec(store, alias)
    if spec is None and (existing := versions_of(store, alias)):
        orphan = store.collection_spec(collection_name(alias, existing[-1]))
        if orphan is not None and made_by(orphan, embedder):
            store.set_alias(alias, orphan.name)
            spec = orphan
    if spec is not None:
        if not made_by(spec, embedder):
            raise ValueError(
                f"index '{alias}' is embedded with {spec.embedding_model} on "
                f"{spec.embedding_backend}, not {embedder.model_id} on {embedder.backend.label}; "
                "re-embed the index to change its model or backend (sluice reembed)"
            )
        if not spec.tenants and (tenants := {c.tenant for c in sample} - {DEFAULT_TENANT}):
            raise ValueError(
                f"index '{alias}' was made before tenants (all its documents are the default "
                f"tenant's), so it cannot take tenant {', '.join(sorted(tenants))}; rebuild it "
                f"with tenants first: sluice reembed --model {spec.embedding_model} --force"
            )
        return spec
    measured = replace(bm25, avg_doc_length=average_length(Bm25Encoder(bm25), sample))
    spec = create_next_version(store, alias, embedder, measured, vector_quantization)
    store.set_alias(alias, spec.name)
    return spec


def made_by(spec: CollectionSpec, embedder: Embedder) -> bool:
    """Whether the collection's vectors are the embedder's: same model, same backend."""
    return (canonical_model_id(spec.embedding_model), spec.embedding_backend) == (
        embedder.model_id,
        embedder.backend.label,
    )


@dataclass
class IndexTarget:
    """Where chunks go: the index behind `alias`, its collection created on the first write."""

    store: VectorStore
    alias: str
    embedder: Embedder
    bm25: Bm25Params
    cache: EmbeddingCache | None = None
    vector_quantization: VectorQuantization = "none"
    """How a collection this target creates stores its dense vectors."""
    creation_lock: Callable[[], AbstractContextManager[object]] = nullcontext
    """Held while finding or making the collection: writers that share no run lock (the
    partitions of one run, in processes of their own) must make one first version between
    them, not one each."""
    _writer: IndexWriter | None = None

    def writer(self, first_batch: Sequence[Chunk]) -> IndexWriter:
        if self._writer is None:
            with self.creation_lock():
                spec = ensure_collection(
                    self.store,
                    self.alias,
                    self.embedder,
                    self.bm25,
                    first_batch,
                    self.vector_quantization,
                )
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

    A document's older versions (its source's: chunks carry their source) are retired only
    after all of its new chunks are written; then
    `after_write` gets its id. `before_write` gets the ids of documents whose first chunks are
    about to be written (the manifest marks them pending).
    """
    pending: list[Chunk] = []
    complete: list[tuple[str, str, int, str]] = []
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
            for doc_id, version, count, source in complete:
                writer.retire_other_versions(doc_id, version, count, source)
            if after_write:
                after_write([doc_id for doc_id, _, _, _ in complete])
            complete.clear()

    for doc_id, chunks in documents:
        for chunk in chunks:
            pending.append(chunk)
            if len(pending) >= batch_size:
                flush()
        complete.append((doc_id, chunks[0].doc_version, len(chunks), chunks[0].source))
    flush()
    return written
