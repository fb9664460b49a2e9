"""A document's config fingerprint is part of its identity (its version, so its point ids): it
must not change without a settings change, and a setting changes only the documents it shapes."""

from __future__ import annotations

from dataclasses import replace

from ingest.fingerprint import ChunkShaping

DEFAULTS = ChunkShaping("fast", "title", True, None, 32, "off")


def test_the_fingerprints_of_existing_documents_stay_as_they_were() -> None:
    # Values made before the fingerprint moved to ingest/: a change here re-processes every
    # document of every index on its next run.
    assert DEFAULTS.fingerprint("md") == DEFAULTS.fingerprint("html") == "4aef0aedccc9d39e"
    assert DEFAULTS.fingerprint("pdf") == DEFAULTS.fingerprint("png") == "feaba54fe1984f75"


def test_the_parse_strategy_changes_only_pdfs_and_images() -> None:
    other = replace(DEFAULTS, parse_strategy="auto")
    assert other.fingerprint("md") == DEFAULTS.fingerprint("md")
    assert other.fingerprint("pdf") != DEFAULTS.fingerprint("pdf")
    assert other.fingerprint("jpg") != DEFAULTS.fingerprint("jpg")


def test_a_chunking_setting_changes_every_file_type() -> None:
    for changed in (
        replace(DEFAULTS, chunk_overlap_tokens=0),
        replace(DEFAULTS, chunk_max_tokens=128),
        replace(DEFAULTS, chunker="document"),
        replace(DEFAULTS, chunk_context=False),
    ):
        for filetype in ("md", "pdf", "html"):
            assert changed.fingerprint(filetype) != DEFAULTS.fingerprint(filetype)
