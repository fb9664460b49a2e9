"""Types that leave the ingest package: what a source lists and what parsing yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SourceFile:
    """One document as a source lists it, before it is read."""

    uri: str
    """Stable location, also the document id (`file:///…`, `s3://…`, `https://…`)."""
    path: Path
    """Where the bytes can be read locally."""
    size: int
    mtime: float

    @property
    def doc_id(self) -> str:
        return self.uri


@dataclass(frozen=True)
class Element:
    """One parsed block of a document (title, paragraph, table, list item…)."""

    text: str
    category: str
    page_number: int | None = None
    depth: int | None = None
    """Heading depth for titles where the format knows it (HTML, DOCX, Markdown); 0 is top."""


@dataclass
class ParsedDocument:
    source: SourceFile
    content_hash: str
    elements: list[Element]
    title: str
    filetype: str
    metadata: dict[str, str] = field(default_factory=dict)


class ParseError(Exception):
    """A document that cannot be parsed; the message is the reason shown to the user."""


class DocumentSource(Protocol):
    """Lists the documents of one source."""

    def list_files(self) -> list[SourceFile]: ...


class DocumentParser(Protocol):
    """Turns one source file into elements, or raises `ParseError` with a reason."""

    def parse(self, source: SourceFile) -> ParsedDocument: ...
