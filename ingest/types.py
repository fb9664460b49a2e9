"""Types that leave the ingest package: what a source lists and what parsing yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


def readable(text: str) -> str:
    """A file name as storable text: bytes of a name that is not UTF-8 (which Python keeps as
    surrogates) become U+FFFD, so it can be hashed, stored in payloads and shown."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def public_uri(uri: str, source: str, path: str) -> str:
    """How a document is shown to a caller that may not see the server's file system: a file
    as `<source>/<path within it>` (a folder source named by its location shows its folder's
    name); an S3 or web document as its URI."""
    if not uri.startswith("file:"):
        return uri
    from pathlib import PurePosixPath
    from urllib.parse import unquote, urlparse

    label = PurePosixPath(unquote(urlparse(source).path)).name if ":" in source else source
    relative = path or PurePosixPath(unquote(urlparse(uri).path)).name
    return f"{label}/{relative}"


@dataclass(frozen=True)
class SourceItem:
    """One document as its source lists it, before anything is read."""

    uri: str
    """Stable location, also the document id (`file:///…`, `s3://bucket/key`, `https://…`)."""
    name: str
    """Path within the source (relative path, key, URL path); its suffix gives the file type."""
    size: int | None
    fingerprint: str
    """A cheap change signal (mtime and size, ETag, Last-Modified); equal means unchanged."""


@dataclass(frozen=True)
class SourceFile:
    """One document's bytes, readable at a local path (fetched where the source is remote)."""

    uri: str
    """Stable location, also the document id (`file:///…`, `s3://…`, `https://…`)."""
    path: Path
    """Where the bytes can be read locally."""
    size: int
    mtime: float
    metadata: dict[str, str] = field(default_factory=dict)
    """Fields the source knows about the document beyond its bytes (a database row's metadata
    columns): stored with each of its chunks and part of its content hash."""

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


class SourceUnavailable(Exception):
    """The source could not be listed or read at all (network, credentials, missing folder)."""


UNREADABLE = "unreadable"
"""How a skip reason starts when the file or folder is there but this process may not read it:
documents already indexed from it are kept (a permission slip never deletes), not deleted."""


class DocumentSource(Protocol):
    """Lists the documents of one source and fetches their bytes."""

    def list_items(self) -> list[SourceItem]: ...

    def fetch(self, item: SourceItem, folder: Path) -> SourceFile:
        """The item's bytes at a local path; remote sources download into `folder`."""
        ...

    def skipped(self) -> list[tuple[str, str]]:
        """(uri, reason) of what the last listing found but will not read; a folder's uri ends
        with "/" (it stands for everything below it)."""
        ...


@dataclass(frozen=True)
class Scope:
    """Part of a source named by what changed in it: documents by uri, and folders (uris ending
    with "/") that hold every document below them."""

    uris: frozenset[str]
    folders: tuple[str, ...] = ()

    def holds(self, uri: str) -> bool:
        return uri in self.uris or uri.startswith(self.folders)

    @classmethod
    def of(cls, uris: frozenset[str]) -> Scope:
        """Each uri as a document and as a folder: a gone one may have been either."""
        return cls(uris, tuple(sorted(uri.rstrip("/") + "/" for uri in uris)))


@runtime_checkable
class ListsScope(Protocol):
    """A source that can list only a scope of itself, without listing everything: what a live
    source syncs on each batch of changes."""

    def list_scope(self, scope: Scope) -> list[SourceItem]:
        """The items `scope` holds that exist now; what is gone is simply not listed."""
        ...


class DocumentParser(Protocol):
    """Turns one source file into elements, or raises `ParseError` with a reason."""

    def parse(self, source: SourceFile) -> ParsedDocument: ...
