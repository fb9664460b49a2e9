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


@needs_shared_docs
@pytest.mark.slow
def test_every_shared_document_parses_or_fails_with_a_reason() -> None:
    parser = UnstructuredParser()
    folder = LocalFolderSource(SHARED_DOCS, exclude=["MANIFEST.tsv"])
    files = [folder.fetch(item, SHARED_DOCS) for item in folder.list_items()]
    assert len(files) == 70
    failed: dict[str, str] = {}
    for source in files:
        try:
            document = parser.parse(source)
        except ParseError as error:
            failed[source.path.name] = str(error)
        else:
            assert document.elements and all(e.text.strip() for e in document.elements)
    if tesseract():
        assert not failed, failed
    else:  # amt_handbook_sample.pdf's text layer is one pdfminer skips (drawn invisible)
        assert set(failed) == {"ocr_test.pdf"}, failed
        assert "apt-get install tesseract-ocr" in failed["ocr_test.pdf"]
