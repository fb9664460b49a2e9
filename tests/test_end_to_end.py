"""Real files of every format -> Prefect ingest flow -> `sluice serve` (uvicorn) -> HTTP queries."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Settings
from ingest.ocr import tesseract
from tests.conftest import (
    DEFAULT_BACKENDS,
    SHARED_DOCS,
    default_backend_data_dir,
    default_backend_env,
    needs_shared_docs,
    sluice_serving,
)

pytestmark = needs_shared_docs

# One real file per format (and the two hard PDFs), small enough for CI's two cores.
FILES = [
    "pdf/2305.03393v1-pg9.pdf",
    "pdf/copy-protected.pdf",
    "pdf/ocr_test.pdf",
    "docx/word_sample.docx",
    "pptx/science-exploration-1p.pptx",
    "html/wiki_duck.html",
    "md/OCR.md",
    "xlsx/stanley-cups.xlsx",
    "epub/winter-sports.epub",
    "odt/fake.odt",
    "rtf/fake-doc.rtf",
    "eml/fake-email-attachment.eml",
    "msg/fake-email.msg",
    "rst/pkgs.rst",
    "txt/debian-faq.en.txt",
]


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: None, model_exports: Path
) -> dict[str, Any]:
    """On the default backends, as users run it."""
    from flows.ingest_flow import ingest_flow

    folder = tmp_path_factory.mktemp("corpus")
    for name in FILES:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((SHARED_DOCS / name).read_bytes())
    data_dir = default_backend_data_dir(tmp_path_factory.mktemp("data"), model_exports)
    settings = Settings(data_dir=data_dir, **DEFAULT_BACKENDS)
    report: dict[str, Any] = ingest_flow(path=str(folder), settings=settings)
    return {"report": report, "settings": settings, "folder": folder}


@pytest.fixture(scope="module")
def api(ingested: dict[str, Any]) -> Iterator[str]:
    env = default_backend_env(os.environ)
    env["SLUICE_DATA_DIR"] = str(ingested["settings"].data_dir)
    with sluice_serving(env) as (url, _):
        yield url


def test_every_file_is_parsed_or_reported_with_a_reason(ingested: dict[str, Any]) -> None:
    report = ingested["report"]
    assert report["files_seen"] == len(FILES)
    failed = {f["uri"].rsplit("/", 1)[-1]: f["reason"] for f in report["documents"]["failed"]}
    assert report["new"] + len(failed) == len(FILES)
    if tesseract():
        assert not failed, failed
    else:
        assert set(failed) == {"ocr_test.pdf"} and "Tesseract" in failed["ocr_test.pdf"]
    assert report["chunks"] == report["points_in_index"] > report["new"]


@pytest.mark.skipif(tesseract() is None, reason="Tesseract is not installed")
def test_text_only_ocr_can_read_is_found_by_retrieve(api: str) -> None:
    """ocr_test.pdf is a scanned page: no text layer, its words only in the picture."""
    body = {"query": "Docling bundles PDF document conversion", "mode": "hybrid", "top_k": 3}
    hits = httpx.post(f"{api}/retrieve", json=body, timeout=60).json()["hits"]
    assert hits[0]["uri"].endswith("ocr_test.pdf")
    assert "Docling bundles PDF document conversion" in hits[0]["text"]


def _sentence_queries(url: str) -> list[tuple[str, str]]:
    """One query per parsed document: a sentence taken from one of its own chunks."""
    queries = []
    for name in FILES:
        body = {"query": Path(name).stem.replace("-", " "), "mode": "bm25", "top_k": 50}
        hits = httpx.post(f"{url}/retrieve", json=body, timeout=60).json()["hits"]
        own = [h for h in hits if h["uri"].endswith(name)]
        if not own:
            continue
        sentences = [
            s.strip()
            for s in re.split(r"(?<=[.!?])\s+|\n+", own[len(own) // 2]["text"])
            if len(s.split()) >= 6
        ]
        if sentences:
            queries.append((own[0]["doc_id"], " ".join(max(sentences, key=len).split()[:30])))
    return queries


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_the_document_a_query_was_written_from_ranks_first(api: str, mode: str) -> None:
    queries = _sentence_queries(api)
    assert len(queries) >= 5
    misses = []
    for doc_id, sentence in queries:
        body = {"query": sentence, "mode": mode, "top_k": 3}
        hits = httpx.post(f"{api}/retrieve", json=body, timeout=60).json()["hits"]
        top = hits[0]
        if top["doc_id"] != doc_id and sentence not in " ".join(top["text"].split()):
            misses.append((sentence, doc_id, top["doc_id"]))
    allowed = 0 if mode != "dense" else len(queries) // 5
    assert len(misses) <= allowed, misses


def test_filters_and_errors_over_http(api: str, ingested: dict[str, Any]) -> None:
    body = {"query": "duck", "filters": {"metadata": {"filetype": ["html"]}}, "top_k": 5}
    hits = httpx.post(f"{api}/retrieve", json=body, timeout=60).json()["hits"]
    assert hits and all(h["uri"].endswith(".html") for h in hits)
    bad = httpx.post(f"{api}/retrieve", json={"query": "x", "top_k": -1}, timeout=60)
    assert bad.status_code == 422 and bad.json()["error"]["message"]
