"""Shared fixtures: the packaged embedder (loaded once), shared data, a Prefect test server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.runtime import prepare_process

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DOCS = SHARED / "data" / "docs"

# Tests run offline and never phone home, exactly like the CLI.
# Prefect's console handler keeps the stderr of the first CLI test, which the runner closes;
# pytest captures log records itself.
prepare_process(
    Path(os.environ.get("SLUICE_TEST_DATA_DIR", "/tmp/sluice-tests")), console_level="CRITICAL"
)
# Tests compare against the packaged model's torch vectors and scores (the `embedder` fixture);
# the default CPU backends (openvino int8) have their own tests (test_inference_backends.py, and
# a re-embed onto them in test_reembed.py).
os.environ.setdefault("SLUICE_EMBEDDING_BACKEND", "torch")
os.environ.setdefault("SLUICE_RERANK_BACKEND", "torch")
# A test that needs a Prefect server starts one (`prefect_server`), or gets a temporary one.
os.environ.setdefault("SLUICE_PREFECT_SERVER_IDLE_MINUTES", "0")

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


def ingest_folder(  # type: ignore[no-untyped-def]
    settings,
    folder: Path,
    embedder,
    cache=None,
    source_name: str = "test",
    dry_run: bool = False,
    store=None,
    budget=None,
):
    """The ingest pipeline (no Prefect) syncing a folder into `settings`' index."""
    from ingest.sources.local_folder import LocalFolderSource

    return sync(
        settings, LocalFolderSource(folder), embedder, source_name, cache, dry_run, store, budget
    )


def sync(  # type: ignore[no-untyped-def]
    settings,
    source,
    embedder,
    source_name: str,
    cache=None,
    dry_run: bool = False,
    store=None,
    budget=None,
):
    """`sync_source` with the session's embedder and in-process parsing (in one worker process
    under `budget`, a `ReadBudget`, where given); returns the report.
    `store`: one the caller holds open (and closes)."""
    from composition.components import Components
    from index.target import IndexTarget
    from pipelines.document_stream import NO_BUDGET
    from pipelines.ingest_sync import IngestParts, SyncOptions, sync_source

    parts = Components(settings)
    own_store = store is None
    store = store or parts.store()
    manifest = parts.manifest()
    try:
        ingest_parts = IngestParts(
            parts.parser(),
            parts.chunker(embedder),
            IndexTarget(store, settings.index_name, embedder, parts.bm25_params(), cache),
            parts.config_fingerprint,
        )
        options = SyncOptions(
            dry_run=dry_run,
            parse_workers=1,
            read_budget=budget or NO_BUDGET,
            max_deleted_fraction=settings.max_deleted_fraction,
            attempts=settings.ingest_attempts,
            backoff_s=0.0,
        )
        return sync_source(source, source_name, ingest_parts, manifest, options)
    finally:
        manifest.close()
        if own_store:
            store.close()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    url: str, process: subprocess.Popen[bytes], seconds: float, what: str
) -> None:
    """Until `url` answers 200; fails with the process's stderr if it exits first."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"{what} did not answer on {url} within {seconds:.0f} s")
        time.sleep(0.3)
