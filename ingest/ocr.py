"""Text of PDFs that pdfminer finds none in, and of images: PDFium's text layer, then Tesseract.

`unstructured`'s own OCR path needs its layout-model stack (unstructured-inference's models,
poppler, a Tesseract binding); this one needs only PDFium (already a dependency, it renders the
page) and the `tesseract` program, run once per page. A PDF page with a text layer PDFium reads
(an OCR layer drawn invisible, which pdfminer skips) is taken as it is; only pages without one
are rendered and recognised.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from ingest.types import Element

OcrMode = Literal["auto", "on", "off"]
IMAGE_TYPES = frozenset({"png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "webp"})
RENDER_DPI = 300
"""Tesseract's accuracy drops below ~300 dpi for body text."""
MAX_PAGE_PIXELS = 40_000_000
"""A page rendered larger than this (a poster, a mis-sized page) is rendered at a lower dpi."""
_MIN_PAGE_TEXT = 20
"""Fewer characters than this on a page is no text layer (page numbers, stray marks)."""
HOW_TO_ENABLE = (
    "install Tesseract (`apt-get install tesseract-ocr`, which scripts/install.sh does when run "
    "as root) and keep SLUICE_OCR=auto"
)


class OcrUnavailable(RuntimeError):
    """SLUICE_OCR=on where Tesseract is not installed: the run stops before reading anything."""


@cache
def tesseract() -> str | None:
    """The `tesseract` program, where it is installed."""
    return shutil.which("tesseract")


def ocr_available(mode: OcrMode) -> bool:
    return mode != "off" and tesseract() is not None


@dataclass(frozen=True)
class PageText:
    page_number: int
    text: str
    recognised: bool
    """From OCR rather than the file's own text layer."""


def pdf_text(path: Path, mode: OcrMode) -> list[PageText]:
    """Each page's text: its text layer where it has one, else OCR where OCR is available."""
    import pypdfium2 as pdfium

    pages: list[PageText] = []
    document = pdfium.PdfDocument(path)
    try:
        for index in range(len(document)):
            page = document[index]
            text = page.get_textpage().get_text_range().replace("\r\n", "\n")
            if len(text.strip()) >= _MIN_PAGE_TEXT:
                pages.append(PageText(index + 1, text, recognised=False))
            elif ocr_available(mode):
                pages.append(PageText(index + 1, _recognise(_render(page)), recognised=True))
    finally:
        document.close()
    return [p for p in pages if p.text.strip()]


def image_text(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG")
    return _recognise(buffer.getvalue())


def elements_of(pages: list[PageText]) -> list[Element]:
    """One element per paragraph (blank-line separated), lines joined."""
    return [
        Element(text=paragraph, category="NarrativeText", page_number=page.page_number)
        for page in pages
        for paragraph in _paragraphs(page.text)
    ]


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        joined = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if joined:
            yield joined


def _render(page: object) -> bytes:
    width, height = page.get_size()  # type: ignore[attr-defined]
    scale = RENDER_DPI / 72
    pixels = width * height * scale * scale
    if pixels > MAX_PAGE_PIXELS:
        scale *= (MAX_PAGE_PIXELS / pixels) ** 0.5
    image = page.render(scale=scale, grayscale=True).to_pil()  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _recognise(png: bytes) -> str:
    """Tesseract on one image, one thread: parse workers already run side by side."""
    program = tesseract()
    if program is None:
        raise RuntimeError(f"OCR needs Tesseract: {HOW_TO_ENABLE}")
    environment = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    done = subprocess.run(
        [program, "stdin", "stdout", "-l", "eng", "--psm", "3"],
        input=png,
        capture_output=True,
        env=environment,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tesseract failed: {done.stderr.decode(errors='replace')[:200]}")
    return done.stdout.decode("utf-8", errors="replace")
