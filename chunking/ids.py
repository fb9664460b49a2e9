"""Deterministic identities: re-running any step writes the same ids, never duplicates.

A document is identified by where it comes from, not by its location alone: its origin (the
source that lists it, and that source's tenant) enters its version, and so every point id. Two
sources that list the same file (overlapping folders, one per tenant) therefore hold two copies
that never share a point, and retiring or deleting one source's copy never touches the other's.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5f0c3b8e-4c1e-4b8a-9a43-7d0e2f6b1c11")


def document_origin(source: str, tenant: str) -> str:
    """What a document's version records of where it comes from."""
    return f"tenant={tenant}|source={source}"


def document_version(content_hash: str, config_fingerprint: str = "", origin: str = "") -> str:
    """A document version changes with its content, with the config that chunked it, and with
    its origin (`document_origin`). An empty origin derives the version as before origins
    existed: points written then keep their ids until their document changes."""
    name = f"{content_hash}|{config_fingerprint}" + (f"|{origin}" if origin else "")
    return uuid.uuid5(_NAMESPACE, name).hex[:16]


def chunk_point_id(doc_id: str, doc_version: str, ordinal: int) -> str:
    """The Qdrant point id (a UUID) of chunk `ordinal` of one version of one document."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}|{doc_version}|{ordinal}"))
