"""The Protocols: `VectorStore`, `Embedder`, `SparseEncoder`, `Reranker`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from chunking.types import Chunk, Tokenizer
from index.contracts.records import (
    CollectionSpec,
    FetchedPoint,
    IndexedPoint,
    PayloadFilter,
    RetrievalTuning,
    ScoredPoint,
    SearchRequest,
    SearchResult,
    StoredPoint,
)
from index.contracts.vectors import Bm25Params, InferenceBackend, SparseVector


class VectorStore(Protocol):
    """One interface over the embedded engine and a Qdrant server.

    Logical indexes are aliases over versioned collections (`docs` -> `docs__v1`).
    """

    def create_collection(self, spec: CollectionSpec) -> None: ...

    def drop_collection(self, name: str) -> None: ...

    def list_collections(self) -> list[str]: ...

    def collection_spec(self, name: str) -> CollectionSpec | None: ...

    def record_tuning(self, name: str, tuning: RetrievalTuning | None) -> None:
        """Stores (or clears) the collection's tuned hybrid options in its spec."""
        ...

    def resolve_alias(self, alias: str) -> str | None: ...

    def set_alias(self, alias: str, collection: str) -> None: ...

    def list_aliases(self) -> dict[str, str]: ...

    def upsert(self, collection: str, points: Sequence[IndexedPoint]) -> None: ...

    def delete(self, collection: str, filter: PayloadFilter) -> None: ...

    def count(self, collection: str, filter: PayloadFilter | None = None) -> int: ...

    def distinct_values(self, collection: str, key: str, limit: int = 1_000_000) -> int: ...

    def scroll(
        self, collection: str, fields: Sequence[str], page_size: int = 1024
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and the named payload fields, in pages."""
        ...

    def read_points(self, collection: str, page_size: int = 256) -> Iterator[list[StoredPoint]]:
        """Every point with its whole payload and BM25 vector, a page at a time."""
        ...

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection holds (a page of ids at a time: nothing is loaded
        beyond them)."""
        ...

    def fetch(self, collection: str, ids: Sequence[str], dense: bool = False) -> list[FetchedPoint]:
        """The points of `ids` the collection holds (others are left out), in no set order;
        with their dense vectors when `dense`."""
        ...

    def search(self, collection: str, request: SearchRequest) -> SearchResult: ...

    def write_stamp(self, collection: str) -> str:
        """A token that changes with every write to the collection (points, deletes, its
        tuning), whichever process wrote: what a cache of its answers is keyed by."""
        ...

    def close(self) -> None: ...


class Embedder(Tokenizer, Protocol):
    """Dense embeddings for one model and its query/passage prefixes; also the tokenizer
    chunking bounds chunks with. `SentenceTransformerEmbedder` is the implementation."""

    model_id: str
    backend: InferenceBackend
    """The runtime and precision of its model: vectors differ between them."""

    @property
    def dimension(self) -> int: ...

    @property
    def query_prefix(self) -> str: ...

    @property
    def passage_prefix(self) -> str: ...

    @property
    def cache_key(self) -> str:
        """What an embedding depends on besides the text (model, its files, passage prefix)."""
        ...

    def warm_up(self) -> None:
        """Loads the model; a model that cannot load fails here."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...

    def embed_query(self, text: str) -> npt.NDArray[np.float32]: ...


class SparseEncoder(Protocol):
    """Sparse (BM25) vectors of a collection's parameters. `Bm25Encoder` is the implementation."""

    params: Bm25Params

    def tokenize(self, text: str) -> list[str]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_chunks(self, chunks: Sequence[Chunk]) -> list[SparseVector]: ...

    def encode_query(self, text: str) -> SparseVector: ...


class RerankSkipped(Exception):
    """Reranking did not run or did not finish; the message is the `degraded` reason."""


@dataclass(frozen=True)
class RerankedPoint:
    point: ScoredPoint
    rerank_score: float
    final_score: float


class Reranker(Protocol):
    """Reorders first-stage candidates; raises `RerankSkipped` rather than run over its budget.
    `CrossEncoderReranker` is the implementation."""

    model_id: str

    def warm_up(self) -> None: ...

    def warm_up_in_background(self) -> None: ...

    def is_loading(self) -> bool:
        """True while a background load has not ended (neither loaded nor failed): a service
        is not ready until it has, or its first answers would skip reranking."""
        ...

    def rerank(
        self, query: str, candidates: Sequence[ScoredPoint], blend: float | None = None
    ) -> list[RerankedPoint]:
        """`blend`: the rerank score's weight against the first stage's (None: the model's
        configured blend)."""
        ...
