"""Parsing any supported file into typed elements with `unstructured`."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.ocr import (
    HOW_TO_ENABLE,
    IMAGE_TYPES,
    OcrMode,
    OcrUnavailable,
    PageText,
    elements_of,
    image_text,
    ocr_available,
    pdf_text,
    tesseract,
)
from ingest.offline_unstructured import prepare_unstructured
from ingest.types import Element, ParsedDocument, ParseError, SourceFile, readable

_ENCRYPTION_HINTS = ("password", "encrypt", "PDFPasswordIncorrect", "PDFEncryptionError")


def content_hash(path: Path, metadata: Mapping[str, str] | None = None) -> str:
    """Of the bytes, and of the source's metadata where it gives any (a change to either is a
    new version of the document)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if metadata:
        digest.update(json.dumps(sorted(metadata.items())).encode())
    return digest.hexdigest()


def _failure_reason(source: SourceFile, error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    if any(hint.lower() in text.lower() for hint in _ENCRYPTION_HINTS):
        return f"encrypted document, cannot be read without its password ({text[:200]})"
    return text[:300] or type(error).__name__


class UnstructuredParser:
    """Partitions documents with `unstructured`, offline.

    `strategy="fast"` reads PDFs' text layers with pdfminer. A PDF in which pdfminer finds no
    text, and an image, are read by `ingest/ocr.py`: PDFium's text layer, else Tesseract where
    `ocr` allows it (`auto`: where it is installed; `on`: required, refused at construction
    where it is not; `off`: never).

    >>> parser = UnstructuredParser()
    >>> parsed = parser.parse(source_file)  # doctest: +SKIP
    >>> parsed.elements[0].category
    'Title'
    """

    def __init__(self, strategy: str = "fast", ocr: OcrMode = "auto") -> None:
        if ocr == "on" and tesseract() is None:
            raise OcrUnavailable(f"SLUICE_OCR=on, but Tesseract is not installed: {HOW_TO_ENABLE}")
        self.strategy = strategy
        self.ocr = ocr
        self._partition: Any = None

    def warm_up(self) -> None:
        if self._partition is None:
            prepare_unstructured()
            from unstructured.partition.auto import partition

            self._partition = partition

    def partitioner_loader(self, name: str) -> Callable[[], None] | None:
        """What imports the `unstructured` module that partitions `name`'s file type, where it
        is not imported yet (the PDF one takes ~5 s of CPU): a worker runs it before the
        document's budget starts, so that the budget counts the parse, not the loading. A
        module that fails to import is reported by the parse that needs it."""
        self.warm_up()
        from unstructured.file_utils.model import FileType

        suffix = PurePosixPath(name).suffix.lower()
        filetype = None if suffix.lstrip(".") in IMAGE_TYPES else FileType.from_extension(suffix)
        module = filetype.partitioner_module_qname if filetype else None
        if not module or module in sys.modules:
            return None

        def load() -> None:
            with contextlib.suppress(Exception):
                importlib.import_module(module)

        return load

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
        filetype = source.path.suffix.lower().lstrip(".") or "unknown"
        try:
            if filetype in IMAGE_TYPES:
                elements = self._image_elements(source.path)
            else:
                raw_elements = self._partition_file(source.path)
                elements = [_to_element(raw) for raw in raw_elements]
                elements = [element for element in elements if element.text.strip()]
                if not elements and filetype == "pdf":
                    elements = elements_of(pdf_text(source.path, self.ocr))
        except ParseError:
            raise
        except Exception as error:  # every parser failure becomes a reported reason
            raise ParseError(_failure_reason(source, error)) from error
        if not elements:
            if filetype == "pdf":
                raise ParseError(f"no text layer found (image-only or scanned PDF); {self._why()}")
            raise ParseError("no extractable text")
        return ParsedDocument(
            source=source,
            content_hash=content_hash(source.path, source.metadata),
            elements=elements,
            title=_document_title(elements, source),
            filetype=filetype,
        )

    def _image_elements(self, path: Path) -> list[Element]:
        if not ocr_available(self.ocr):
            raise ParseError(f"an image, whose text needs OCR; {self._why()}")
        return elements_of([PageText(1, image_text(path), recognised=True)])

    def _why(self) -> str:
        """Why OCR found nothing, or did not run: what a user can do about it."""
        if self.ocr == "off":
            return "OCR is off (SLUICE_OCR=off)"
        if tesseract() is None:
            return f"OCR needs Tesseract: {HOW_TO_ENABLE}"
        return "OCR found no text either"


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
