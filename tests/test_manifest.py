"""The manifest's documents are each a source's, and one written before that is taken over."""

from __future__ import annotations

import sqlite3
from dataclasses import astuple
from pathlib import Path

from ingest.manifest import DocumentRecord, Manifest

SHARED = "file:///srv/ov/sub/s1.md"

# The documents table as manifests made before documents were a source's have it.
BEFORE = """
CREATE TABLE documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    doc_version TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
CREATE INDEX documents_by_source ON documents (source);
"""


def _row(source: str, doc_id: str = SHARED, fingerprint: str = "f1") -> DocumentRecord:
    return DocumentRecord(doc_id, source, fingerprint, "h1", "cfg", "v1", 1, "indexed", 0, "", 1.0)


def test_two_sources_rows_of_one_file_are_kept_updated_and_removed_apart(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "docs.sqlite")
    try:
        manifest.put_many([_row("a"), _row("b")])
        manifest.update_fingerprints("b", [(SHARED, "f2")])
        assert manifest.documents("a") == {SHARED: _row("a")}
        assert manifest.documents("b")[SHARED].fingerprint == "f2"
        manifest.remove("a", [SHARED])
        assert manifest.documents("a") == {}
        assert [r.source for r in manifest.all_documents()] == ["b"]
    finally:
        manifest.close()


def test_a_manifest_keyed_by_doc_id_alone_is_rewritten_once_keeping_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "docs.sqlite"
    old = sqlite3.connect(path)
    old.executescript(BEFORE)
    rows = [_row("a"), _row("a", "file:///srv/ov/top.md"), _row("c", "s3://bucket/k.md")]
    old.executemany("INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?)", map(astuple, rows))
    old.commit()
    old.close()

    for _ in range(2):  # the second open finds it rewritten
        manifest = Manifest(path)
        try:
            assert sorted(manifest.all_documents(), key=repr) == sorted(rows, key=repr)
        finally:
            manifest.close()
    manifest = Manifest(path)
    try:
        manifest.put_many([_row("b")])
        assert manifest.documents("a")[SHARED] == _row("a") and SHARED in manifest.documents("b")
    finally:
        manifest.close()
