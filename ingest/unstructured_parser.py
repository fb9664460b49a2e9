"""Parsing any supported file into typed elements with `unstructured`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ingest.offline_unstructured import prepare_unstructured
from ingest.types import Element, ParsedDocument, ParseError, SourceFile, readable

_ENCRYPTION_HINTS = ("password", "encrypt", "PDFPasswordIncorrect", "PDFEncryptionError")


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _failure_reason(source: SourceFile, error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    if any(hint.lower() in text.lower() for hint in _ENCRYPTION_HINTS):
        return f"encrypted document, cannot be read without its password ({text[:200]})"
    return text[:300] or type(error).__name__


class UnstructuredParser:
    """Partitions documents with `unstructured`, offline.

    `strategy="fast"` reads PDFs' text layers with pdfminer; a PDF with no text layer is reported
    as failed unless OCR is installed and `strategy` allows it.

    >>> parser = UnstructuredParser()
    >>> parsed = parser.parse(source_file)  # doctest: +SKIP
    >>> parsed.elements[0].category
    'Title'
    """

    def __init__(self, strategy: str = "fast") -> None:
        self.strategy = strategy
        self._partition: Any = None

    def warm_up(self) -> None:
        if self._partition is None:
            prepare_unstructured()
            from unstructured.partition.auto import partition

            self._partition = partition

    def _partition_file(self, path: Path) -> list[Any]:
        """unstructured hashes the file name into element ids, which fails on a path that is
        not UTF-8: such a file is handed over open, under its readable name."""
        options = {"strategy": self.strategy, "languages": ["eng"]}
        try:
            str(path).encode()
        except UnicodeEncodeError:
            with path.open("rb") as handle:
                elements: list[Any] = self._partition(
                    file=handle, metadata_filename=readable(path.name), **options
                )
                return elements
        return list(self._partition(filename=str(path), **options))

    def parse(self, source: SourceFile) -> ParsedDocument:
        self.warm_up()
        if source.path.stat().st_size == 0:
            raise ParseError("an empty file (0 bytes)")
        try:
            raw_elements = self._partition_file(source.path)
        except Exception as error:  # every parser failure becomes a reported reason
            raise ParseError(_failure_reason(source, error)) from error
        elements = [_to_element(raw) for raw in raw_elements]
        elements = [element for element in elements if element.text.strip()]
        filetype = source.path.suffix.lower().lstrip(".") or "unknown"
        if not elements:
            if filetype == "pdf":
                raise ParseError(
                    "no text layer found (image-only or scanned PDF); OCR is not enabled"
                )
            raise ParseError("no extractable text")
        return ParsedDocument(
            source=source,
            content_hash=content_hash(source.path),
            elements=elements,
            title=_document_title(elements, source),
            filetype=filetype,
        )


def _to_element(raw: Any) -> Element:
    metadata = raw.metadata
    return Element(
        text=str(raw.text or ""),
        category=str(getattr(raw, "category", "Text")),
        page_number=getattr(metadata, "page_number", None),
        depth=getattr(metadata, "category_depth", None),
    )


_NAVIGATION_TITLES = frozenset(
    {"navigation", "contents", "table of contents", "menu", "search", "skip to content"}
)


def _document_title(elements: list[Element], source: SourceFile) -> str:
    """The first plausible title element; web pages often open with a navigation heading."""
    for element in elements[:40]:
        text = element.text.strip()
        if (
            element.category == "Title"
            and len(text) <= 200
            and text.lower() not in _NAVIGATION_TITLES
        ):
            return text
    return Path(readable(source.path.name)).stem.replace("_", " ").replace("-", " ")
