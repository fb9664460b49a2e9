"""Writing chunks into a collection: embed, BM25-encode, upsert, retire older versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chunking.types import Chunk
from index.contracts import (
    Condition,
    Embedder,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    Range,
    SparseEncoder,
    VectorStore,
)
from index.write.embedding_cache import EmbeddingCache


@dataclass
class WriteStats:
    points_written: int = 0
    embedded: int = 0
    tokens_embedded: int = 0
    """Tokens of the texts embedded (cache hits excluded): each chunk's `token_count`, the
    chunker's count of its text (its context line and the model's prefix are not counted)."""
    from_cache: int = 0
    embed_seconds: float = 0.0
    upsert_seconds: float = 0.0


def embed_cached(
    embedder: Embedder,
    cache: EmbeddingCache | None,
    hashes: Sequence[str],
    texts: Sequence[str],
    stats: WriteStats,
    tokens: Sequence[int] | None = None,
) -> npt.NDArray[np.float32]:
    """Embeds only the texts the cache does not hold (by hash), and caches them. `tokens`: each
    text's token count (a chunk's `token_count`), summed into `stats.tokens_embedded` for the
    texts embedded; an embedded text counted 0 (a point stored before counts) is counted by the
    embedder's tokenizer. Without `tokens`, no tokens are counted."""
    if cache is None:
        stats.embedded += len(texts)
        stats.tokens_embedded += _tokens(embedder, texts, tokens, range(len(texts)))
        return embedder.embed_documents(texts)
    known = cache.get_many(hashes)
    missing = [i for i, h in enumerate(hashes) if h not in known]
    if missing:
        fresh = embedder.embed_documents([texts[i] for i in missing])
        cache.put_many([hashes[i] for i in missing], fresh)
        known.update(zip((hashes[i] for i in missing), fresh, strict=True))
    stats.embedded += len(missing)
    stats.tokens_embedded += _tokens(embedder, texts, tokens, missing)
    stats.from_cache += len(texts) - len(missing)
    return np.stack([known[h] for h in hashes])


def _tokens(
    embedder: Embedder,
    texts: Sequence[str],
    tokens: Sequence[int] | None,
    embedded: Sequence[int],
) -> int:
    if tokens is None:
        return 0
    known = [tokens[i] for i in embedded]
    uncounted = [texts[i] for i, count in zip(embedded, known, strict=True) if count <= 0]
    return sum(known) + (sum(embedder.count_tokens(uncounted)) if uncounted else 0)


class IndexWriter:
    """Writes documents' chunks so that a reader never sees a document missing.

    A document's new version is upserted first; only then are points of its other versions
    deleted. Point ids are deterministic, so re-writing the same version changes nothing.
    """

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        embedder: Embedder,
        bm25: SparseEncoder,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.collection = collection
        self.embedder = embedder
        self.bm25 = bm25
        self.stats = WriteStats()

    def write_chunks(self, chunks: Sequence[Chunk]) -> None:
        import time

        if not chunks:
            return
        started = time.perf_counter()
        dense = self._embed(chunks)
        sparse = self.bm25.encode_chunks(chunks)
        embedded = time.perf_counter()
        points = [
            IndexedPoint(id=c.chunk_id, dense=d, sparse=s, payload=c.payload())
            for c, d, s in zip(chunks, dense, sparse, strict=True)
        ]
        self.store.upsert(self.collection, points)
        self.stats.points_written += len(points)
        self.stats.embed_seconds += embedded - started
        self.stats.upsert_seconds += time.perf_counter() - embedded

    def _embed(self, chunks: Sequence[Chunk]) -> npt.NDArray[np.float32]:
        return embed_cached(
            self.embedder,
            self.cache,
            [c.text_hash for c in chunks],
            [c.indexed_text for c in chunks],
            self.stats,
            [c.token_count for c in chunks],
        )

    def retire_other_versions(
        self, doc_id: str, keep_version: str, keep_chunks: int | None = None, source: str = ""
    ) -> None:
        """Deletes the document's points of other versions and, given its chunk count, any of
        this version beyond it (left by an earlier attempt that chunked it differently, e.g.
        before a model switch changed the tokenizer). The document is `source`'s copy: another
        source's copy of the same file is never touched."""
        self.store.delete(
            self.collection,
            PayloadFilter(
                must=_document(source, [doc_id]),
                must_not=[MatchAny("doc_version", [keep_version])],
            ),
        )
        if keep_chunks is not None:
            self.store.delete(
                self.collection,
                PayloadFilter(
                    must=[
                        *_document(source, [doc_id]),
                        MatchAny("doc_version", [keep_version]),
                        Range("ordinal", gte=keep_chunks),
                    ]
                ),
            )

    def delete_documents(self, doc_ids: Sequence[str], source: str = "") -> None:
        """`source`'s copies of these documents."""
        if doc_ids:
            self.store.delete(self.collection, PayloadFilter(must=_document(source, doc_ids)))


def _document(source: str, doc_ids: Sequence[str]) -> list[Condition]:
    """A document is identified by its source and its location (doc_id); a chunk written
    without a source (an evaluation corpus) by its location alone."""
    located = MatchAny("doc_id", list(doc_ids))
    return [located, MatchAny("source", [source])] if source else [located]
