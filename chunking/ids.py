"""Deterministic identities: re-running any step writes the same ids, never duplicates."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5f0c3b8e-4c1e-4b8a-9a43-7d0e2f6b1c11")


def document_version(content_hash: str, config_fingerprint: str = "") -> str:
    """A document version changes with its content or with the config that chunked it."""
    return uuid.uuid5(_NAMESPACE, f"{content_hash}|{config_fingerprint}").hex[:16]


def chunk_point_id(doc_id: str, doc_version: str, ordinal: int) -> str:
    """The Qdrant point id (a UUID) of chunk `ordinal` of one version of one document."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}|{doc_version}|{ordinal}"))
