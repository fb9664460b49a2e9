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
