"""Reading one candidate document: fetch, hash, and parse only if its content changed.

A `DocumentReader` is picklable so that a process pool can run it next to the embedding.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.changes import Candidate
from ingest.types import DocumentParser, DocumentSource, ParsedDocument, ParseError
from ingest.unstructured_parser import content_hash


@dataclass
class ReadResult:
    candidate: Candidate
    content_hash: str = ""
    changed: bool = False
    """The content differs from what the manifest recorded (always so for a new document)."""
    document: ParsedDocument | None = None
    """Parsed when changed, unless the reader only hashes (a dry run)."""
    error: str = ""
    attempts: int = 0
    seconds: float = 0.0

    @property
    def unchanged(self) -> bool:
        return not self.error and not self.changed


class DocumentReader:
    """Fetches, hashes and parses candidates; transient failures (network, I/O) are retried
    with exponential backoff, a `ParseError` (the file itself is bad) is not."""

    def __init__(
        self,
        source: DocumentSource,
        parser: DocumentParser,
        attempts: int = 3,
        backoff_s: float = 1.0,
        parse: bool = True,
    ) -> None:
        self.source = source
        self.parser = parser
        self.parse = parse
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

    def read(self, candidate: Candidate) -> ReadResult:
        started = time.perf_counter()
        result = ReadResult(candidate)
        for attempt in range(1, self.attempts + 1):
            result.attempts = attempt
            try:
                self._read_once(candidate, result)
                result.error = ""
                break
            except ParseError as error:
                result.error = str(error)
                break
            except Exception as error:  # a source or parser bug must not end the run
                result.error = f"{type(error).__name__}: {error}"[:300]
                if attempt < self.attempts:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
        result.seconds = time.perf_counter() - started
        return result

    def _read_once(self, candidate: Candidate, result: ReadResult) -> None:
        with tempfile.TemporaryDirectory(prefix="sluice-fetch-") as folder:
            fetched = self.source.fetch(candidate.item, Path(folder))
            result.content_hash = content_hash(fetched.path, fetched.metadata)
            record = candidate.record
            result.changed = not (
                record is not None
                and candidate.reason == "content"
                and record.content_hash == result.content_hash
            )
            if result.changed and self.parse:
                result.document = self.parser.parse(fetched)
