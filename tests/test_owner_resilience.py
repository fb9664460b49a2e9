"""The process that owns the embedded shards, as the others see it when it stops, dies, goes away
or speaks another protocol: a clear error within the deadline (`SLUICE_OWNER_TIMEOUT_S`),
recovery without a restart when it resumes, a survivor that takes over when it dies (a request
in flight too), and no threads left behind. Real processes throughout: a small owner script,
`sluice serve` and CLI commands on one data dir."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from index.contracts import IndexLockedError
from index.store.shared import SharedEdgeStore
from tests.conftest import (
    DEFAULT_BACKENDS,
    default_backend_data_dir,
    default_backend_env,
    metric_samples,
    sluice_serving,
    stop_process,
)
from tests.retrieve_watch import RetrieveWatch

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 2.0
SLACK_S = 8.0
"""What a loaded machine may add to the deadline before a client's error is back."""

DOCS = {
    "pump.md": "# Pump maintenance\n\nThe impeller of the centrifugal pump wears after 2,000 "
    "hours; replace it together with the mechanical seal.\n",
    "valves.md": "# Valve inspection\n\nThe butterfly valves are inspected every quarter for "
    "leaks at the stem packing.\n",
    "boiler.md": "# Boiler start-up\n\nOpen the feedwater valve and check the drum level gauge "
    "before lighting the burner.\n",
}
QUERY = {"query": "centrifugal pump impeller", "top_k": 3}

OWNER = """
    import signal, sys, threading, time
    from pathlib import Path
    from index.store.shared import SharedEdgeStore

    store = SharedEdgeStore(Path(sys.argv[1]))
    delay = float(sys.argv[2])
    if delay:  # every search takes this long here: one is in flight most of the time
        search = store._local.search

        def slow_search(*args, **kwargs):
            print("searching", flush=True)
            time.sleep(delay)
            return search(*args, **kwargs)

        store._local.search = slow_search
    signal.signal(
        signal.SIGUSR1, lambda *_: print(f"threads {threading.active_count()}", flush=True)
    )
    print(store.role, flush=True)
    while True:
        time.sleep(3600)
"""

OLD_PROTOCOL_OWNER = """
    import secrets, sys
    from multiprocessing.connection import Listener
    from pathlib import Path
    from filelock import FileLock
    from index.store.channel import key_path, socket_path

    # What Sluice's channel was before it had a protocol version (protocol 1): the owner lock,
    # a key file beside it and multiprocessing's key challenge on the socket.
    store_dir = Path(sys.argv[1])
    lock = FileLock(store_dir / "owner.lock")
    lock.acquire()
    key = secrets.token_bytes(32)
    key_path(store_dir).write_bytes(key)
    key_path(store_dir).chmod(0o600)
    socket_path(store_dir).unlink(missing_ok=True)
    listener = Listener(str(socket_path(store_dir)), family="AF_UNIX", authkey=key)
    print("listening", flush=True)
    while True:
        try:
            connection = listener.accept()
        except Exception:
            continue  # a client that failed the challenge
        try:
            connection.recv()  # one request, then it goes: never an answer a client could use
        except Exception:
            pass
        connection.close()
"""

NEWER_CLIENT = """
    import sys
    from pathlib import Path
    import index.store.channel
    from index.store.shared import SharedEdgeStore

    index.store.channel.PROTOCOL = 99  # a later Sluice's channel
    try:
        store = SharedEdgeStore(Path(sys.argv[1]))
    except Exception as error:
        print(f"{type(error).__name__}: {error}", flush=True)
        sys.exit(2)
    print(store.role, flush=True)
    store.close()
"""


def _python(script: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True, **popen)  # type: ignore[call-overload, no-any-return]


class _Lines:
    """The lines a process prints, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stdout:
            self._lines.put(line.strip())

    def next(self, starting: str, seconds: float = 120) -> str:
        """The next line that starts with `starting` (earlier ones are skipped)."""
        deadline = time.monotonic() + seconds
        while True:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(starting):
                return line

    def clear(self) -> None:
        while not self._lines.empty():
            self._lines.get_nowait()


@contextmanager
def _owner(store_dir: Path, search_delay_s: float = 0.0) -> Iterator[tuple[int, _Lines]]:
    """A process holding the store as its owner (and nothing else); its pid and its lines."""
    with tempfile.TemporaryFile() as log:
        process = _python(
            OWNER, str(store_dir), str(search_delay_s), stdout=subprocess.PIPE, stderr=log
        )
        lines = _Lines(process)
        try:
            try:
                assert lines.next("") == "owner"
            except queue.Empty:
                log.seek(0)
                raise RuntimeError(log.read().decode(errors="replace")[-3000:]) from None
            yield process.pid, lines
        finally:
            process.kill()  # stopped or not
            process.wait(timeout=60)


def _python_threads(pid: int, lines: _Lines) -> int:
    """The owner script's Python threads (`threading.active_count()`)."""
    lines.clear()
    os.kill(pid, signal.SIGUSR1)
    return int(lines.next("threads ", 30).split()[1])


def _os_threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, model_exports: Path) -> Path:
    """A data dir with `DOCS` ingested on the default backends; each test works on a copy."""
    from composition.components import Components
    from flows.ingest_flow import run_sync

    folder = tmp_path_factory.mktemp("owner-docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    data_dir = default_backend_data_dir(tmp_path_factory.mktemp("owner-data"), model_exports)
    settings = Settings(data_dir=data_dir, **DEFAULT_BACKENDS)
    run_sync(settings, Components(settings).folder_source(folder))
    return data_dir


@pytest.fixture
def data_dir(ingested: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(ingested, copy, symlinks=True)
    return copy


def _store_dir(data_dir: Path) -> Path:
    return Settings(data_dir=data_dir).qdrant_path


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    return default_backend_env(os.environ) | {
        "SLUICE_DATA_DIR": str(data_dir),
        "SLUICE_OWNER_TIMEOUT_S": str(DEADLINE_S),
        **settings,
    }


def _retrieve(url: str) -> httpx.Response:
    return httpx.post(f"{url}/retrieve", json=QUERY, timeout=120)


def _sluice(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done, time.monotonic() - started


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_a_stopped_owner_is_a_clear_error_in_time_and_a_resumed_one_serves_again(
    data_dir: Path,
) -> None:
    env = _env(data_dir)
    with _owner(_store_dir(data_dir)) as (owner, _), sluice_serving(env) as (url, _):
        first = _retrieve(url)
        assert first.status_code == 200, first.text
        assert first.json()["hits"][0]["uri"].endswith("pump.md")

        stop_process(owner)  # Ctrl-Z on the owner
        stopped = time.monotonic()
        answer = _retrieve(url)
        to_503 = time.monotonic() - stopped
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "did not answer" in answer.json()["error"]["message"]
        assert to_503 <= DEADLINE_S + SLACK_S
        ready = httpx.get(f"{url}/ready", timeout=120)
        assert ready.status_code == 503 and "did not answer" in ready.json()["reason"]
        versions, cli_s = _sluice(env, "versions")
        assert versions.returncode == 2, versions.stderr[-3000:]
        assert "did not answer" in _one_line(versions.stderr)

        os.kill(owner, signal.SIGCONT)
        resumed = time.monotonic()
        assert _until(lambda: _retrieve(url).status_code == 200, 60)
        to_recover = time.monotonic() - resumed
        assert httpx.get(f"{url}/ready", timeout=120).status_code == 200
        print(
            f"\nowner stopped (deadline {DEADLINE_S:g} s): /retrieve 503 after {to_503:.2f} s; "
            f"`sluice versions` exit 2 after {cli_s:.2f} s (process start included); "
            f"owner resumed: /retrieve 200 after {to_recover:.2f} s"
        )


def test_a_request_in_flight_when_the_owner_is_killed_is_answered_by_the_survivor(
    data_dir: Path,
) -> None:
    env = _env(data_dir, SLUICE_WARM_UP_SEARCHES="0")
    store_dir = _store_dir(data_dir)
    with _owner(store_dir, search_delay_s=1.0) as (owner, lines), sluice_serving(env) as (url, _):
        poller = RetrieveWatch(url, QUERY, pause_s=0)
        try:
            lines.clear()
            lines.next("searching")  # a search of the API's is in the owner now
            os.kill(owner, signal.SIGKILL)
            killed = time.monotonic()
            assert _until(lambda: poller.answered_since(killed) >= 5, 120)
        finally:
            failed = poller.stop()
        assert poller.answers and failed == [], failed[:3]
        newcomer = SharedEdgeStore(store_dir)  # the API holds the owner lock now
        try:
            assert newcomer.role == "client"
            index = Settings(data_dir=data_dir).index_name
            assert newcomer.count(newcomer.resolve_alias(index) or index) > 0
        finally:
            newcomer.close()


def test_two_apis_on_one_data_dir_both_answer_and_one_goes_on_when_the_other_stops(
    data_dir: Path,
) -> None:
    from retrieval_api.keys import ALL_TENANTS, KeyStore

    env = _env(data_dir)
    limited, _ = KeyStore(Settings(data_dir=data_dir).api_keys_path).create(
        [ALL_TENANTS], rate_per_s=0.2, burst=3
    )
    with sluice_serving(env) as (first_url, first), sluice_serving(env) as (second_url, second):
        for url in (first_url, second_url):
            answer = _retrieve(url)
            assert answer.status_code == 200, answer.text
            assert answer.json()["hits"][0]["uri"].endswith("pump.md")
            ready = httpx.get(f"{url}/ready", timeout=120)
            assert ready.status_code == 200 and ready.json()["collection"], ready.text
        # A key's rate holds across both: its burst of 3 once, not once per process.
        statuses = [
            httpx.post(
                f"{url}/retrieve", json=QUERY, headers={"X-API-Key": limited}, timeout=120
            ).status_code
            for url in (first_url, second_url) * 4
        ]
        assert statuses.count(200) == 3 and statuses.count(429) == 5, statuses
        # Each replica reports its own counts, and which replica it is.
        for url, process, answered in (
            (first_url, first, statuses[0::2]),
            (second_url, second, statuses[1::2]),
        ):
            scraped = metric_samples(httpx.get(f"{url}/metrics", timeout=60).text)
            (info,) = [labels for name, labels in scraped if name == "sluice_replica_info"]
            assert dict(info)["pid"] == str(process.pid)
            refused = ("route", "/retrieve"), ("status", "429")
            assert sum(
                value
                for (name, labels), value in scraped.items()
                if name == "sluice_requests_total" and set(refused) <= set(labels)
            ) == answered.count(429)
        poller = RetrieveWatch(second_url, QUERY, pause_s=0)
        try:
            first.terminate()  # the owner of the shards
            first.wait(timeout=120)
            stopped = time.monotonic()
            assert _until(lambda: poller.answered_since(stopped) >= 10, 120)
        finally:
            failed = poller.stop()
        assert failed == [], failed[:3]
        assert httpx.get(f"{second_url}/ready", timeout=120).status_code == 200


def test_an_owner_of_an_older_protocol_is_named_not_waited_for(data_dir: Path) -> None:
    store_dir = _store_dir(data_dir)
    with tempfile.TemporaryFile() as log:
        old = _python(OLD_PROTOCOL_OWNER, str(store_dir), stdout=subprocess.PIPE, stderr=log)
        try:
            assert _Lines(old).next("") == "listening"
            with pytest.raises(IndexLockedError) as raised:
                SharedEdgeStore(store_dir, owner_wait_s=5).close()
            from index.store.channel import PROTOCOL, ProtocolMismatch

            assert isinstance(raised.value, ProtocolMismatch)
            message = str(raised.value)
            assert f"channel protocol {PROTOCOL}" in message
            assert "channel protocol 1" in message

            versions, _ = _sluice(_env(data_dir), "versions")
            assert versions.returncode == 2, versions.stderr[-3000:]
            line = _one_line(versions.stderr)
            assert f"channel protocol {PROTOCOL}" in line and "channel protocol 1" in line
        finally:
            old.kill()
            old.wait(timeout=60)


def test_a_client_of_a_newer_protocol_is_refused_with_both_versions_named(
    data_dir: Path,
) -> None:
    store_dir = _store_dir(data_dir)
    with _owner(store_dir):
        newer = _python(NEWER_CLIENT, str(store_dir), stdout=subprocess.PIPE)
        out, _ = newer.communicate(timeout=120)
        assert newer.returncode == 2, out
        from index.store.channel import PROTOCOL

        assert out.startswith("ProtocolMismatch: ")
        assert f"channel protocol {PROTOCOL}" in out and "channel protocol 99" in out
        # The owner goes on serving clients of its own protocol.
        client = SharedEdgeStore(store_dir)
        try:
            assert client.role == "client" and client.list_collections()
        finally:
            client.close()


def test_clients_timing_out_on_a_stopped_owner_leave_no_threads_behind(data_dir: Path) -> None:
    """The API's worker threads come and go (one idle 10 s is retired at the next request),
    each with its own connection to the owner; after bursts of searches, some of them against
    a stopped owner, both processes are back to the threads they started with."""
    env = _env(data_dir, SLUICE_MAX_CONCURRENT_SEARCHES="16", SLUICE_WARM_UP_SEARCHES="0")
    with _owner(_store_dir(data_dir)) as (owner, lines), sluice_serving(env) as (url, api):

        def settled() -> tuple[int, int]:
            time.sleep(11)  # past anyio's idle limit: the next request retires the idle workers
            assert _retrieve(url).status_code == 200
            time.sleep(1)
            return _python_threads(owner, lines), _os_threads(api.pid)

        def burst(status: int) -> None:
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda _: _retrieve(url), range(16)))
            assert {answer.status_code for answer in answers} == {status}, answers[0].text

        baseline = settled()
        burst(200)
        stop_process(owner)
        for _ in range(3):
            burst(503)
        os.kill(owner, signal.SIGCONT)
        assert _until(lambda: _retrieve(url).status_code == 200, 60)
        burst(200)
        after = settled()
        if after != baseline:  # a retired worker's connection may take a moment to close
            assert _until(lambda: settled() == baseline, 60), (baseline, after)
        print(f"\nthreads (owner's Python threads, the API's): {baseline} before, {after} after")
