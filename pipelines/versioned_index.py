"""One index's collection versions and what every version operation needs to act on them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from index.contracts import (
    CollectionSpec,
    Embedder,
    IndexNotFoundError,
    VectorQuantization,
    VectorStore,
)
from index.write.embedding_cache import EmbeddingCache
from ingest.manifest import Manifest


@dataclass
class VersionedIndex:
    """The alias, its versions in the store, and their records in the manifest.

    Built by the composition root; re-embed, rollback and retention take it whole.
    """

    store: VectorStore
    manifest: Manifest
    alias: str
    run_lock: Callable[[float], AbstractContextManager[object]]
    """The index's run lock (ingest runs and version switches), waiting up to the given seconds."""
    embedder_for: Callable[[CollectionSpec], Embedder]
    """An embedder that makes vectors the way a version's were made."""
    cache_for: Callable[[Embedder], EmbeddingCache]
    vector_quantization: VectorQuantization = "none"
    """How a version built now stores its dense vectors (a re-embed applies the setting)."""

    def serving_spec(self) -> CollectionSpec:
        name = self.store.resolve_alias(self.alias)
        spec = self.store.collection_spec(name) if name else None
        if spec is None:
            raise IndexNotFoundError(
                f"index '{self.alias}' does not exist yet; ingest documents first"
            )
        return spec
