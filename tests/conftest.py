"""Shared fixtures: the packaged embedder (loaded once), shared data, a Prefect test server,
a served corpus."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest

from config.runtime import prepare_process

if TYPE_CHECKING:
    from config.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DOCS = SHARED / "data" / "docs"

# Tests run offline and never phone home, exactly like the CLI.
# Prefect's console handler keeps the stderr of the first CLI test, which the runner closes;
# pytest captures log records itself.
TEST_DATA_DIR = Path(os.environ.get("SLUICE_TEST_DATA_DIR", "/tmp/sluice-tests"))
"""Shared by the session's processes (pytest-xdist workers): what is safe to share (model
exports, made atomically), with a folder of each worker's own (its Prefect home)."""
prepare_process(
    TEST_DATA_DIR / os.environ.get("PYTEST_XDIST_WORKER", "main"), console_level="CRITICAL"
)
# Processes embed as users' do: on the default backend (OpenVINO int8 on a CPU), from exports
# made once for the session (`model_exports`), so that a process never loads torch to embed
# (index/models/exported_model.py). Tests that compare against the packaged model's torch
# vectors use the `embedder` fixture. Reranking stays on torch: its scores are compared with
# the torch cross-encoder's, and it loads through sentence-transformers on every backend.
os.environ.setdefault("SLUICE_MODEL_EXPORTS_DIR", str(TEST_DATA_DIR / "model-exports"))
os.environ.setdefault("SLUICE_EMBEDDING_DEVICE", "cpu")  # the same suite on a machine with a GPU
os.environ.setdefault("SLUICE_RERANK_BACKEND", "torch")
# The CLI's tables and messages as a wide terminal shows them: a worker's longer temp paths
# would otherwise wrap a line in the middle of what a test looks for.
os.environ.setdefault("COLUMNS", "250")
# A test that needs a Prefect server starts one (`prefect_server`), or gets a temporary one.
os.environ.setdefault("SLUICE_PREFECT_SERVER_IDLE_MINUTES", "0")

# Property tests run a bounded number of examples in CI; `pytest --hypothesis-profile=deep`
# runs the counts each test was written with (run it before closing a change to what they guard).
hypothesis.settings.register_profile("ci", deadline=None)
hypothesis.settings.register_profile("deep", deadline=None)
hypothesis.settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        help="also run the tests marked `full` (docs/testing.md): `bash scripts/test.sh --full`",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `full` run only with `--full`: the rest of a matrix one representative of
    which runs in every run, and the longest documents (docs/testing.md)."""
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="in the full run only: bash scripts/test.sh --full")
    for item in items:
        if item.get_closest_marker("full"):
            item.add_marker(skip)


def examples(deep: int, ci: int) -> int:
    """A property test's `max_examples`: `deep` under the deep profile, else `ci`."""
    return deep if hypothesis.settings.get_current_profile_name() == "deep" else ci


needs_shared_docs = pytest.mark.skipif(
    not SHARED_DOCS.is_dir(), reason="../shared/data/docs is not beside this checkout"
)


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from index.models.embedder import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def model_exports() -> Path:
    """One folder of onnx and openvino exports for the session's data dirs: each model is
    exported once, not once per data dir or per worker (an export lands by an atomic rename,
    so two workers exporting at once both end with a whole one)."""
    exports = Path(os.environ["SLUICE_MODEL_EXPORTS_DIR"])  # what every Settings here uses
    exports.mkdir(parents=True, exist_ok=True)
    return exports


DEFAULT_BACKENDS: dict[str, Any] = {"embedding_backend": "auto", "rerank_backend": "auto"}
"""Settings for what users run: the default backends (OpenVINO int8 on a CPU) for the
reranker too, which this suite otherwise leaves on torch."""


def default_backend_data_dir(data_dir: Path, exports: Path) -> Path:
    """A data dir whose model exports are the session's (`model_exports`), also for a
    process started without `SLUICE_MODEL_EXPORTS_DIR`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "model-exports").symlink_to(exports)
    return data_dir


def default_backend_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` less the backend choices this suite sets, so that a process runs the defaults."""
    return {k: v for k, v in env.items() if not k.endswith(("_BACKEND", "_QUANTIZATION"))}


def adopt_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """This process's environment made `env` for one test: an in-process command then reads
    what a process started with `env` would."""
    for name in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def shell_env(**more: str) -> dict[str, str]:
    """A user's shell: nothing of the session's Sluice or Prefect settings but where the
    session's model exports are (made once; a process that finds them never loads torch)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    return env | {"SLUICE_MODEL_EXPORTS_DIR": os.environ["SLUICE_MODEL_EXPORTS_DIR"], **more}


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
    tenant: str | None = None,
):
    """The ingest pipeline (no Prefect) syncing a folder into `settings`' index."""
    from ingest.sources.local_folder import LocalFolderSource

    return sync(
        settings,
        LocalFolderSource(folder),
        embedder,
        source_name,
        cache,
        dry_run,
        store,
        budget,
        tenant,
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
    tenant: str | None = None,
):
    """`sync_source` with the session's embedder and in-process parsing (in one worker process
    under `budget`, a `ReadBudget`, where given); returns the report.
    `store`: one the caller holds open (and closes)."""
    from composition.components import Components
    from index.write.target import IndexTarget
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
        if tenant is not None:
            options.tenant = tenant
        return sync_source(source, source_name, ingest_parts, manifest, options)
    finally:
        manifest.close()
        if own_store:
            store.close()


def stop_process(pid: int, seconds: float = 10) -> None:
    """SIGSTOP (Ctrl-Z), returning once the process is stopped: the signal is delivered
    asynchronously, and on a busy machine the process may still answer a call sent at once."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.005)


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


@contextmanager
def sluice_serving(
    env: dict[str, str], ready_seconds: float = 180
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `sluice serve` on a free loopback port with `env`, once `/ready` answers. Its
    log goes to a file, not a pipe: a pipe nobody reads fills up and stops the server in the
    middle of logging (an error's traceback, say)."""
    import tempfile

    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_answering(f"{url}/ready", server, ready_seconds, "sluice serve")
            except RuntimeError:
                log.seek(0)
                raise RuntimeError(log.read().decode(errors="replace")[-5000:]) from None
            yield url, server
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=60)


@dataclass(frozen=True)
class ServedCorpus:
    """A real `sluice serve` on loopback, keys required, over three small Markdown documents
    of tenant `acme` (one chunk each)."""

    url: str
    admin_key: str
    settings: Settings


CORPUS = {
    "pump.md": "# Pump maintenance\n\nThe impeller of the centrifugal pump wears after 2,000 "
    "hours of running; replace it together with the mechanical seal.\n",
    "keys.md": "# Rotating API keys\n\nCreate a new key with sluice keys create, give it to "
    "every caller, then revoke the old key.\n",
    "valves.md": "# Valve inspection\n\nThe butterfly valves are inspected every quarter for "
    "leaks at the stem packing.\n",
    # Sections too long to share a chunk: a document of several chunks, for `expand`.
    "boiler.md": "# Boiler handbook\n\n"
    + "\n\n".join(
        f"## {title}\n\n"
        + " ".join(f"{sentence} (step {n} of {title.lower()})." for n in range(12))
        for title, sentence in (
            ("Start-up", "Open the feedwater valve and check the drum level gauge"),
            ("Blowdown", "Drain sludge from the mud drum through the bottom blowdown line"),
            ("Shutdown", "Close the burner fuel valve and let the furnace purge with air"),
        )
    )
    + "\n",
}


@pytest.fixture(scope="session")
def served_corpus(
    tmp_path_factory: pytest.TempPathFactory, model_exports: Path
) -> Iterator[ServedCorpus]:
    """On the default backends, as users run it."""
    from composition.components import Components
    from config.settings import Settings
    from flows.ingest_flow import run_sync
    from retrieval_api.keys import KeyStore

    folder = tmp_path_factory.mktemp("served-corpus")
    for name, text in CORPUS.items():
        (folder / name).write_text(text)
    data_dir = default_backend_data_dir(tmp_path_factory.mktemp("served-data"), model_exports)
    settings = Settings(data_dir=data_dir, auth="required", **DEFAULT_BACKENDS)
    run_sync(settings, Components(settings).folder_source(folder, "acme"))
    admin_key, _ = KeyStore(settings.api_keys_path).create([], scope="admin")
    env = default_backend_env(os.environ)
    env |= {"SLUICE_DATA_DIR": str(settings.data_dir), "SLUICE_AUTH": "required"}
    with sluice_serving(env) as (url, _):
        yield ServedCorpus(url, admin_key, settings)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """One PostgreSQL server per test process (tests/postgres_server.py)."""
    from tests.postgres_server import postgres_server, why_no_server

    reason = why_no_server()
    if reason:
        pytest.skip(reason)
    with postgres_server(free_port()) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """A database of its own on the suite's PostgreSQL server."""
    from tests.postgres_server import new_database

    return new_database(postgres_server_url)


def until_report(reports: list[Any], test: Any, what: str, seconds: float = 60) -> Any:
    """The newest of `reports` (a live source's, appended as its runs end) that passes `test`,
    waited for up to `seconds`."""
    deadline = time.monotonic() + seconds
    while not (found := [r for r in reports if test(r)]):
        assert time.monotonic() < deadline, f"no run {what}: {[r.to_dict() for r in reports]}"
        time.sleep(0.05)
    return found[-1]


def send_click(
    client: Any, headers: dict[str, str], answer: dict[str, Any], hit: dict[str, Any], event_id: str
) -> None:
    """POST /feedback: a click on `hit` of a /retrieve `answer`, which must be accepted."""
    item = {"chunk_id": hit["chunk_id"], "label": "clicked"}
    sent = client.post(
        "/feedback",
        json={"request_id": answer["request_id"], "event_id": event_id, "items": [item]},
        headers=headers,
    )
    assert sent.status_code == 200, sent.text
