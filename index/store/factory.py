"""Pick the vector-store backend once, from the deployment settings."""

from __future__ import annotations

from pathlib import Path

from index.contracts import VectorStore
from index.store.cluster import ClusterLayout


def open_vector_store(
    embedded_path: Path,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    owner_timeout_s: float = 20.0,
    layout: ClusterLayout | None = None,
) -> VectorStore:
    """A Qdrant server when `qdrant_url` is set, its collections laid out by `layout`, else
    the embedded engine at `embedded_path`, shared with every other process that opens it
    (`index/store/shared.py`), whose owner process gets `owner_timeout_s` to answer each
    step."""
    if qdrant_url:
        from qdrant_client import QdrantClient

        from index.store.server import QdrantClientStore

        client = QdrantClient(url=qdrant_url, api_key=api_key, timeout=60)
        return QdrantClientStore(client, layout)
    from index.store.shared import SharedEdgeStore

    return SharedEdgeStore(embedded_path, deadline_s=owner_timeout_s)
