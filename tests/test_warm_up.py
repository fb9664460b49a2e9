"""`sluice serve` searches its index before it takes requests, through the searcher requests
use, so that the first callers of a large index do not wait for it to page in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from retrieval_api.app import create_app
from tests.conftest import ingest_folder


@pytest.mark.parametrize("searches", [5, 1, 0])
def test_the_server_searches_its_chunks_opening_words_before_taking_requests(
    tmp_path: Path, embedder, searches: int, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pump.md").write_text("The impeller of the pump wears out after a year of service.\n")
    (corpus / "seal.md").write_text("A worn seal leaks oil onto the floor of the pump room.\n")
    settings = Settings(data_dir=tmp_path / "data", warm_up_searches=searches)
    ingest_folder(settings, corpus, embedder)
    expected = min(searches, 2)  # two chunks to take the words of
    with (
        caplog.at_level(logging.INFO, logger="sluice.api"),
        TestClient(create_app(settings), base_url="http://localhost") as client,
    ):
        searcher = client.app.state.service.searcher  # type: ignore[attr-defined]
        # Before any request: the searches ran through the searcher requests use.
        assert (len(searcher.query_vectors), len(searcher.results)) == (expected, expected)
        assert client.post("/retrieve", json={"query": "pump"}).status_code == 200
    warmed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warmed")]
    assert [" ".join(m.split()[:5]) for m in warmed] == (
        [f"warmed docs with {expected} searches"] if searches else []
    )


def test_an_empty_index_starts_without_warming(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", warm_up_searches=20)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.get("/ready").status_code == 200
