from __future__ import annotations

import hashlib
import uuid

import pytest

from chunking.ids import chunk_point_id, document_origin, document_version

# Golden values. Point ids and document versions are stored in every index and manifest: a change
# to the namespace, the separator or the field order re-identifies every chunk of every document
# (the next ingest writes duplicates, then deletes everything). Each value was also computed by
# hand per RFC 4122 section 4.3: sha1(namespace bytes + name), first 16 bytes, version nibble 5
# and variant bits 10, with namespace 5f0c3b8e-4c1e-4b8a-9a43-7d0e2f6b1c11 and the name
# "doc_id|doc_version|ordinal" (ids) or "content sha256|config fingerprint" (versions; the first
# 16 hex digits).
GOLDEN_POINT_IDS = [
    ("file:///a.md", "v1", 0, "4ac003d9-0a09-5c0b-970e-1eb1ea9ef9b8"),
    ("file:///a.md", "v1", 1, "769fe74a-6900-53b1-a4fa-1e59d3fc26f1"),
    ("file:///docs/guide.pdf", "3f2a9c0d1e4b5a67", 12, "be7ea520-fd81-5670-b0e3-2ff60715e467"),
    (
        "s3://bucket/Ünïcode naïve.md",
        "0a88f26b447b54be",
        4095,
        "a61f7f66-0f7d-5809-a8de-e3f2124469b4",
    ),
]
HELLO_SHA256 = "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
GOLDEN_VERSIONS = [
    (HELLO_SHA256, "cfg", "0a88f26b447b54be"),
    (HELLO_SHA256, "", "686d0e3773ea56de"),
    ("hash1", "cfg", "77a861d24aa851b6"),
]


# A document's origin (its source and tenant) extends the name: "sha256|fingerprint|origin".
GOLDEN_ORIGIN_VERSION = (HELLO_SHA256, "cfg", "handbook", "acme", "23448fe1d5b550c1")


@pytest.mark.parametrize(("doc_id", "version", "ordinal", "expected"), GOLDEN_POINT_IDS)
def test_point_ids_have_their_pinned_values(
    doc_id: str, version: str, ordinal: int, expected: str
) -> None:
    assert chunk_point_id(doc_id, version, ordinal) == expected


@pytest.mark.parametrize(("content_hash", "fingerprint", "expected"), GOLDEN_VERSIONS)
def test_document_versions_have_their_pinned_values(
    content_hash: str, fingerprint: str, expected: str
) -> None:
    assert document_version(content_hash, fingerprint) == expected


def test_the_pinned_content_hash_is_sha256_of_the_file_bytes() -> None:
    assert hashlib.sha256(b"hello world\n").hexdigest() == HELLO_SHA256


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


def test_a_documents_origin_has_its_pinned_value_and_none_keeps_the_versions_before_it() -> None:
    content_hash, fingerprint, source, tenant, expected = GOLDEN_ORIGIN_VERSION
    origin = document_origin(source, tenant)
    assert origin == "tenant=acme|source=handbook"
    assert document_version(content_hash, fingerprint, origin) == expected
    assert document_version(content_hash, fingerprint, "") == GOLDEN_VERSIONS[0][2]


def test_the_same_file_from_two_sources_or_two_tenants_gets_two_versions() -> None:
    versions = {
        document_version("hash1", "cfg", document_origin(source, tenant))
        for source in ("a", "b")
        for tenant in ("acme", "globex")
    }
    assert len(versions) == 4 and document_version("hash1", "cfg") not in versions
