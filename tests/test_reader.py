"""Reading one candidate document: fetch, hash, parse only if changed, retry what is transient."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from ingest.changes import Candidate, ChangeReason
from ingest.manifest import DocumentRecord
from ingest.reader import DocumentReader
from ingest.sources.local_folder import LocalFolderSource
from ingest.types import Element, ParsedDocument, ParseError, SourceFile

TEXT = b"# Pumps\n\nA centrifugal pump moves water.\n"
TEXT_HASH = hashlib.sha256(TEXT).hexdigest()


class StubParser:
    """Parses a file into one element of its text; fails with each queued error first."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.parsed: list[Path] = []

    def parse(self, source: SourceFile) -> ParsedDocument:
        self.parsed.append(source.path)
        if self.failures:
            raise self.failures.pop(0)
        text = source.path.read_text()
        return ParsedDocument(
            source=source,
            content_hash="set-by-the-parser",
            elements=[Element(text=text, category="NarrativeText")],
            title=source.path.stem,
            filetype=source.path.suffix.lstrip("."),
        )


@pytest.fixture
def source(tmp_path: Path) -> LocalFolderSource:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pumps.md").write_bytes(TEXT)
    return LocalFolderSource(folder)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr("ingest.reader.time.sleep", waited.append)
    return waited


def _record(content_hash: str) -> DocumentRecord:
    return DocumentRecord(
        doc_id="file:///docs/pumps.md",
        source="docs",
        fingerprint="old-fingerprint",
        content_hash=content_hash,
        config_fingerprint="cfg",
        doc_version="v1",
        chunks=1,
        status="indexed",
    )


def _candidate(
    source: LocalFolderSource, reason: ChangeReason = "new", recorded_hash: str | None = None
) -> Candidate:
    [item] = source.list_items()
    record = None if recorded_hash is None else _record(recorded_hash)
    return Candidate(item, reason, "cfg", record)


# -- hashing and change detection ------------------------------------------------------------


def test_a_new_document_is_hashed_parsed_and_changed(source: LocalFolderSource) -> None:
    parser = StubParser()
    candidate = _candidate(source)

    result = DocumentReader(source, parser).read(candidate)

    assert result.candidate == candidate
    assert result.content_hash == TEXT_HASH
    assert result.changed and not result.unchanged
    assert result.document is not None
    assert result.document.source.uri == candidate.item.uri
    assert result.document.elements[0].text == TEXT.decode()
    assert (result.error, result.attempts) == ("", 1)
    assert result.seconds > 0


def test_same_content_hash_after_a_fingerprint_change_is_unchanged_and_not_parsed(
    source: LocalFolderSource,
) -> None:
    parser = StubParser()

    result = DocumentReader(source, parser).read(_candidate(source, "content", TEXT_HASH))

    assert result.unchanged and not result.changed
    assert result.content_hash == TEXT_HASH
    assert result.document is None
    assert parser.parsed == []


def test_different_content_is_changed_and_parsed(source: LocalFolderSource) -> None:
    parser = StubParser()

    result = DocumentReader(source, parser).read(_candidate(source, "content", "0" * 64))

    assert result.changed and not result.unchanged
    assert result.document is not None
    assert len(parser.parsed) == 1


@pytest.mark.parametrize("reason", ["config", "retry", "interrupted"])
def test_same_content_is_reparsed_when_the_candidate_is_not_a_content_change(
    source: LocalFolderSource, reason: ChangeReason
) -> None:
    """A new chunking config, a failed or an interrupted write must be redone whatever the hash."""
    parser = StubParser()

    result = DocumentReader(source, parser).read(_candidate(source, reason, TEXT_HASH))

    assert result.changed and result.document is not None
    assert result.content_hash == TEXT_HASH


def test_a_dry_run_hashes_but_does_not_parse(source: LocalFolderSource) -> None:
    parser = StubParser()

    result = DocumentReader(source, parser, parse=False).read(_candidate(source))

    assert result.changed and result.content_hash == TEXT_HASH
    assert result.document is None and result.error == ""
    assert parser.parsed == []


# -- failures --------------------------------------------------------------------------------


def test_a_parse_error_is_the_documents_error_without_a_retry(
    source: LocalFolderSource, sleeps: list[float]
) -> None:
    parser = StubParser(ParseError("encrypted document"))

    result = DocumentReader(source, parser, attempts=3).read(_candidate(source))

    assert result.error == "encrypted document"
    assert result.attempts == 1 and sleeps == []
    assert result.document is None
    assert not result.unchanged, "a failed document is not reported unchanged"


def test_transient_failures_are_retried_with_exponential_backoff_then_reported(
    source: LocalFolderSource, sleeps: list[float]
) -> None:
    parser = StubParser(*(OSError(f"disk hiccup {n}") for n in range(1, 5)))

    result = DocumentReader(source, parser, attempts=4, backoff_s=0.5).read(_candidate(source))

    assert result.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0], "no wait after the last attempt"
    assert result.error == "OSError: disk hiccup 4", "the last failure is reported"
    assert result.document is None and not result.unchanged


def test_a_failure_that_clears_on_retry_leaves_no_error(
    source: LocalFolderSource, sleeps: list[float]
) -> None:
    parser = StubParser(ConnectionError("reset by peer"))

    result = DocumentReader(source, parser, attempts=3, backoff_s=2.0).read(_candidate(source))

    assert (result.error, result.attempts) == ("", 2)
    assert sleeps == [2.0]
    assert result.document is not None and result.changed


def test_any_parser_exception_becomes_the_documents_error(
    source: LocalFolderSource, sleeps: list[float]
) -> None:
    parser = StubParser(*(KeyError("page tree") for _ in range(2)))

    result = DocumentReader(source, parser, attempts=2).read(_candidate(source))

    assert result.error == "KeyError: 'page tree'"
    assert result.attempts == 2


def test_a_long_error_is_cut_to_300_characters(
    source: LocalFolderSource, sleeps: list[float]
) -> None:
    parser = StubParser(RuntimeError("x" * 1000))

    result = DocumentReader(source, parser, attempts=1).read(_candidate(source))

    assert result.error.startswith("RuntimeError: xxx")
    assert len(result.error) == 300


def test_at_least_one_attempt_is_made(source: LocalFolderSource, sleeps: list[float]) -> None:
    parser = StubParser()

    result = DocumentReader(source, parser, attempts=0).read(_candidate(source))

    assert result.attempts == 1 and result.document is not None


def test_a_file_gone_since_listing_is_reported_without_retries(
    source: LocalFolderSource, sleeps: list[float]
) -> None:
    """Gone is gone: retrying a local file that was deleted or renamed only delays the rest
    (a live folder's batch most of all); the next listing deletes it from the index."""
    candidate = _candidate(source)
    (source.root / "pumps.md").unlink()
    parser = StubParser()

    result = DocumentReader(source, parser, attempts=2, backoff_s=1.0).read(candidate)

    assert result.error == "gone from the folder since it was listed"
    assert result.attempts == 1 and sleeps == []
    assert parser.parsed == [] and not result.unchanged


# -- process pools ---------------------------------------------------------------------------


def test_a_reader_survives_pickling_for_a_process_pool(source: LocalFolderSource) -> None:
    reader = pickle.loads(pickle.dumps(DocumentReader(source, StubParser(), attempts=2)))

    result = reader.read(_candidate(source))

    assert result.content_hash == TEXT_HASH and result.document is not None
