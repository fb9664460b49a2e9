"""Every real document of ../shared/data/docs is parsed or fails with a reason, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ingest.ocr import tesseract
from ingest.sources.local_folder import LocalFolderSource
from ingest.types import ParseError
from ingest.unstructured_parser import UnstructuredParser
from tests.conftest import SHARED_DOCS, needs_shared_docs


def test_a_broken_file_fails_with_the_parsers_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ParseError) as caught:
        source = LocalFolderSource(broken)
        UnstructuredParser().parse(source.fetch(source.list_items()[0], tmp_path))
    assert str(caught.value)


def test_parsing_never_tries_to_download_a_spacy_model() -> None:
    UnstructuredParser().warm_up()
    from unstructured.nlp import tokenize

    assert tokenize.sent_tokenize("One sentence here. Another one there.") == [
        "One sentence here.",
        "Another one there.",
    ]
    assert "en_core_web_sm" not in sys.modules


def _shared_files() -> list[str]:
    """Each document of ../shared/data/docs, by its path there (none where it is absent)."""
    if not SHARED_DOCS.is_dir():
        return []
    folder = LocalFolderSource(SHARED_DOCS, exclude=["MANIFEST.tsv"])
    return sorted(item.name for item in folder.list_items())


LONG_MANUALS = {
    "pdf/debian-reference.en.pdf",
    "pdf/gnuplot.pdf",
    "pdf/developers-reference.pdf",
    "pdf/fhs-3.0.pdf",
}
"""Three quarters of this file's time (60-270 s each on two busy cores): the full run's. Every
other format and layout, and long documents too (a 146-page PDF, an 872-page .docx), run every
time."""
SHARED_FILES = _shared_files()


@pytest.fixture(scope="module")
def parser() -> UnstructuredParser:
    parser = UnstructuredParser()
    parser.warm_up()
    return parser


@needs_shared_docs
def test_the_shared_documents_are_all_here() -> None:
    assert len(SHARED_FILES) == 70


@needs_shared_docs
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.full) if n in LONG_MANUALS else n for n in SHARED_FILES],
)
def test_each_shared_document_parses_or_fails_with_a_reason(
    parser: UnstructuredParser, name: str
) -> None:
    """One test per document, so that a parallel run spreads them (four long manuals take
    most of the time)."""
    folder = LocalFolderSource(SHARED_DOCS, exclude=["MANIFEST.tsv"])
    (item,) = [item for item in folder.list_items() if item.name == name]
    source = folder.fetch(item, SHARED_DOCS)
    expected_failure = name.endswith("ocr_test.pdf") and not tesseract()
    try:
        document = parser.parse(source)
    except ParseError as error:
        # amt_handbook_sample.pdf's text layer is one pdfminer skips (drawn invisible), but
        # OCR reads it; ocr_test.pdf has no text layer at all.
        assert expected_failure, f"{name}: {error}"
        assert "apt-get install tesseract-ocr" in str(error)
    else:
        assert not expected_failure, f"{name} parsed without Tesseract"
        assert document.elements and all(e.text.strip() for e in document.elements)
