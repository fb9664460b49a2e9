from __future__ import annotations

import uuid

from chunking.ids import chunk_point_id, document_version


def test_point_ids_are_deterministic_uuids() -> None:
    first = chunk_point_id("file:///a.md", "v1", 0)
    assert first == chunk_point_id("file:///a.md", "v1", 0)
    assert uuid.UUID(first)


def test_point_ids_differ_by_document_version_and_ordinal() -> None:
    ids = {
        chunk_point_id(doc, version, ordinal)
        for doc in ("file:///a.md", "file:///b.md")
        for version in ("v1", "v2")
        for ordinal in range(3)
    }
    assert len(ids) == 12


def test_document_version_follows_content_and_config() -> None:
    assert document_version("hash1", "cfg") == document_version("hash1", "cfg")
    assert document_version("hash1", "cfg") != document_version("hash2", "cfg")
    assert document_version("hash1", "cfg") != document_version("hash1", "other")
