"""Logical indexes as aliases over versioned collections (`docs` -> `docs__v2`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from index.contracts import Bm25Params, CollectionSpec, Embedder, VectorQuantization, VectorStore


def collection_name(alias: str, version: int) -> str:
    return f"{alias}__v{version}"


def versions_of(store: VectorStore, alias: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(alias)}__v(\d+)$")
    return sorted(
        int(m.group(1)) for name in store.list_collections() if (m := pattern.match(name))
    )


def version_number(collection: str) -> int:
    return int(collection.rsplit("__v", 1)[1])


def create_next_version(
    store: VectorStore,
    alias: str,
    embedder: Embedder,
    bm25: Bm25Params,
    vector_quantization: VectorQuantization = "none",
) -> CollectionSpec:
    """Creates the next collection version of `alias` (the alias is not moved), recording how
    its vectors are made so that queries are embedded the same way, and how they are stored."""
    existing = versions_of(store, alias)
    spec = CollectionSpec(
        name=collection_name(alias, (existing[-1] if existing else 0) + 1),
        embedding_model=embedder.model_id,
        dimension=embedder.dimension,
        bm25=bm25,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        query_prefix=embedder.query_prefix,
        passage_prefix=embedder.passage_prefix,
        tenants=True,
        embedding_backend=embedder.backend.label,
        vector_quantization=vector_quantization,
    )
    store.create_collection(spec)
    return spec


def active_spec(store: VectorStore, alias: str) -> CollectionSpec | None:
    """The spec of the collection the alias serves, or None if the index does not exist."""
    name = store.resolve_alias(alias)
    return store.collection_spec(name) if name else None
