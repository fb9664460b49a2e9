"""Shared fixtures: the packaged embedder (loaded once), shared data, a Prefect test server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.runtime import prepare_process

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DOCS = SHARED / "data" / "docs"

# Tests run offline and never phone home, exactly like the CLI.
prepare_process(Path(os.environ.get("SLUICE_TEST_DATA_DIR", "/tmp/sluice-tests")))

needs_shared_docs = pytest.mark.skipif(
    not SHARED_DOCS.is_dir(), reason="../shared/data/docs is not beside this checkout"
)


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from index.embedder import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def ingest_folder(settings, folder: Path, embedder, cache=None, source_name: str = "test"):  # type: ignore[no-untyped-def]
    """The ingest pipeline (no Prefect) over a folder into `settings`' index; returns the report."""
    from flows.components import build_chunker, build_parser
    from flows.pipeline import run_ingest
    from index.from_settings import bm25_params, build_store
    from ingest.local_folder import LocalFolderSource

    store = build_store(settings)
    try:
        return run_ingest(
            LocalFolderSource(folder).list_files(),
            build_parser(settings),
            build_chunker(settings, embedder),
            embedder,
            store,
            settings.index_name,
            bm25_params(settings),
            source_name=source_name,
            cache=cache,
        )
    finally:
        store.close()
