"""Text of scanned PDFs and images: PDFium's text layer where pdfminer finds none, then
Tesseract; and reasons that say how to get OCR where it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import ocr
from ingest.ocr import OcrUnavailable, tesseract
from ingest.sources.local_folder import LocalFolderSource
from ingest.types import ParsedDocument, ParseError
from ingest.unstructured_parser import UnstructuredParser
from tests.conftest import SHARED_DOCS, needs_shared_docs

needs_tesseract = pytest.mark.skipif(tesseract() is None, reason="Tesseract is not installed")
SCANNED = SHARED_DOCS / "pdf" / "ocr_test.pdf"
HIDDEN_LAYER = SHARED_DOCS / "pdf" / "amt_handbook_sample.pdf"


def _parse(path: Path, tmp_path: Path, mode: str = "auto") -> ParsedDocument:
    source = LocalFolderSource(path)
    return UnstructuredParser(ocr=mode).parse(  # type: ignore[arg-type]
        source.fetch(source.list_items()[0], tmp_path)
    )


def _text(document: ParsedDocument) -> str:
    return " ".join(e.text for e in document.elements)


@pytest.fixture
def no_tesseract(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "")
    tesseract.cache_clear()
    yield
    tesseract.cache_clear()


@needs_shared_docs
@needs_tesseract
def test_a_scanned_pdf_is_read_by_ocr(tmp_path: Path) -> None:
    document = _parse(SCANNED, tmp_path)
    assert "Docling bundles PDF document conversion" in _text(document)
    assert {e.page_number for e in document.elements} == {1}


@needs_tesseract
def test_an_image_is_read_by_ocr(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1400, 300), "white")
    font = ImageFont.load_default(size=48)
    ImageDraw.Draw(image).text((40, 100), "Centrifugal pumps move water uphill", "black", font)
    image.save(tmp_path / "pumps.png")
    document = _parse(tmp_path / "pumps.png", tmp_path)
    assert "Centrifugal pumps move water uphill" in _text(document)
    assert document.filetype == "png"


@needs_shared_docs
def test_a_text_layer_pdfminer_skips_is_read_without_ocr(tmp_path: Path) -> None:
    document = _parse(HIDDEN_LAYER, tmp_path, mode="off")
    assert "self-locking nuts" in _text(document)


@needs_shared_docs
def test_with_ocr_off_a_scanned_pdf_fails_saying_so(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"no text layer found .*SLUICE_OCR=off"):
        _parse(SCANNED, tmp_path, mode="off")


@needs_shared_docs
def test_without_tesseract_the_reason_says_how_to_install_it(
    tmp_path: Path,
    no_tesseract: None,
) -> None:
    with pytest.raises(ParseError, match=r"apt-get install tesseract-ocr"):
        _parse(SCANNED, tmp_path)


def test_ocr_on_without_tesseract_refuses_to_start(no_tesseract: None) -> None:
    with pytest.raises(OcrUnavailable, match="SLUICE_OCR=on"):
        UnstructuredParser(ocr="on")


def test_paragraphs_are_split_on_blank_lines_and_lines_joined() -> None:
    pages = [ocr.PageText(2, "First line\nsame paragraph.\n\n  \nSecond one.\n", True)]
    assert [(e.text, e.page_number) for e in ocr.elements_of(pages)] == [
        ("First line same paragraph.", 2),
        ("Second one.", 2),
    ]
