"""`sluice ingest PATH --watch` as users run it: in the foreground beside `sluice serve` on one
data dir (embedded engine), an edit found by `/retrieve`, its lag in `/metrics`, a clean stop
on SIGTERM, and a SIGKILL in the middle of a batch repaired by the next start, with nothing lost
and nothing twice; started before the API too, and stopped (SIGSTOP) under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Settings
from tests.conftest import metric_samples, sluice_serving, stop_process

WAIT_S = 90


class LiveProcess:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sluice", "ingest", str(folder), "--watch", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reports: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.reports.append(json.loads(line))

    def until(self, test: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if found := [r for r in self.reports if test(r)]:
                return found[-1]
            assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        raise AssertionError(f"no run {what}: {self.reports}")


def _doc(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(f"# {name}\n\n{text}\n")
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    folder = tmp_path / "docs"
    folder.mkdir()
    for number in range(6):
        _doc(folder, f"d{number}.md", f"Pump {number} wears its impeller out.")
    env = {**os.environ, "SLUICE_DATA_DIR": str(tmp_path / "data")}
    made = subprocess.run(
        [sys.executable, "-m", "sluice", "ingest", str(folder)], env=env, capture_output=True
    )
    assert made.returncode == 0, made.stderr
    with sluice_serving(env) as (url, _):  # the API starts first: it owns the shards
        yield folder, env, url


def _hits(url: str, query: str) -> list[str]:
    response = httpx.post(f"{url}/retrieve", json={"query": query, "mode": "bm25"}, timeout=30)
    assert response.status_code == 200, response.text
    return [hit["uri"] for hit in response.json()["hits"]]


def test_an_edit_is_found_by_the_api_beside_it_and_sigterm_stops_it(
    served: tuple[Path, dict[str, str], str],
) -> None:
    folder, env, url = served
    live = LiveProcess(folder, env)
    try:
        live.until(lambda r: not r["live"] and r["unchanged"] == 6, "reconciling")
        _doc(folder, "zebra.md", "A zebra crossing appears near the pumps.")
        started = time.monotonic()
        while not any(u.endswith("zebra.md") for u in _hits(url, "zebra crossing")):
            assert time.monotonic() - started < WAIT_S, live.reports
            time.sleep(0.1)
        report = live.until(lambda r: r["live"] and r["new"] == 1, "the new file")
        assert report["files_seen"] == 1 and 0 <= report["lag_s"] < WAIT_S
        metrics = metric_samples(httpx.get(f"{url}/metrics", timeout=30).text)
        lags = {
            labels: v
            for (name, labels), v in metrics.items()
            if name == "sluice_source_lag_seconds"
        }
        assert list(lags.values()) == [report["lag_s"]], lags
        (folder / "zebra.md").unlink()
        live.until(lambda r: r["live"] and r["deleted"] == 1, "the delete")
        assert not any(u.endswith("zebra.md") for u in _hits(url, "zebra crossing"))
    finally:
        live.process.send_signal(signal.SIGTERM)
        code = live.process.wait(timeout=60)
    assert code == 0 and "stopped after" in live.process.stderr.read()  # type: ignore[union-attr]


def test_a_watcher_killed_mid_batch_loses_and_duplicates_nothing_on_restart(
    served: tuple[Path, dict[str, str], str],
) -> None:
    folder, env, url = served
    live = LiveProcess(folder, env)
    live.until(lambda r: not r["live"], "reconciling")
    for number in range(120):
        _doc(folder, f"burst-{number:03}.md", f"Burst page {number} about valves and seals.")
    deadline = time.monotonic() + WAIT_S
    settings = Settings(data_dir=Path(env["SLUICE_DATA_DIR"]))
    while not _manifest(settings)["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)  # until the batch is being written
    live.process.send_signal(signal.SIGKILL)
    live.process.wait(timeout=30)
    assert _manifest(settings)["indexed"] < 126, "killed before the batch was done"
    again = LiveProcess(folder, env)
    try:
        again.until(lambda r: not r["live"], "reconciling after the crash")
        state = _manifest(settings)
        assert state["indexed"] == 126 and state["pending"] == 0, state
        metrics = metric_samples(httpx.get(f"{url}/metrics", timeout=30).text)
        points = next(v for (n, _), v in metrics.items() if n == "sluice_index_points")
        assert points == state["chunks"], "no duplicate and no missing point"
    finally:
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(timeout=60) == 0


def test_a_watcher_started_before_the_api_serves_it_and_a_stopped_one_is_a_clear_503(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    _doc(folder, "pump.md", "Pump seals wear out.")
    env = {**os.environ, "SLUICE_DATA_DIR": str(tmp_path / "data"), "SLUICE_OWNER_TIMEOUT_S": "2"}
    live = LiveProcess(folder, env)  # first: the watcher owns the shards, the API asks it
    try:
        live.until(lambda r: not r["live"] and r["new"] == 1, "reconciling")
        with sluice_serving(env) as (url, _):
            assert _hits(url, "pump seals")
            _found(url, folder, "zebra.md", "A zebra crossing appears near the pumps.")
            os.kill(live.process.pid, signal.SIGSTOP)  # Ctrl-Z on the watcher
            try:
                stopped = time.monotonic()
                answer = httpx.post(f"{url}/retrieve", json={"query": "zebra"}, timeout=60)
                assert answer.status_code == 503, answer.text
                assert "did not answer" in answer.json()["error"]["message"]
                assert time.monotonic() - stopped < 10, "the owner's deadline, not a hang"
            finally:
                os.kill(live.process.pid, signal.SIGCONT)
            _found(url, folder, "yak.md", "A yak grazes by the intake.")  # live again
    finally:
        live.process.send_signal(signal.SIGTERM)
        assert live.process.wait(timeout=60) == 0


def test_a_watcher_that_made_the_index_under_a_serving_api_is_not_needed_between_syncs(
    tmp_path: Path,
) -> None:
    """The API first, on an empty data dir: the watcher makes the index (and holds it while it
    writes), then hands it to the API, so that Ctrl-Z on the watcher stops no answer."""
    folder = tmp_path / "docs"
    folder.mkdir()
    _doc(folder, "pump.md", "Pump seals wear out.")
    env = {**os.environ, "SLUICE_DATA_DIR": str(tmp_path / "data"), "SLUICE_OWNER_TIMEOUT_S": "2"}
    with sluice_serving(env) as (url, _):
        live = LiveProcess(folder, env)
        try:
            live.until(lambda r: not r["live"] and r["new"] == 1, "reconciling")
            assert any(u.endswith("pump.md") for u in _hits(url, "pump seals"))
            stop_process(live.process.pid)  # Ctrl-Z on the watcher
            try:
                assert any(u.endswith("pump.md") for u in _hits(url, "pump seals"))
            finally:
                os.kill(live.process.pid, signal.SIGCONT)
            _found(url, folder, "yak.md", "A yak grazes by the intake.")  # it still syncs
        finally:
            live.process.send_signal(signal.SIGTERM)
            assert live.process.wait(timeout=60) == 0


def _found(url: str, folder: Path, name: str, text: str) -> None:
    _doc(folder, name, text)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if any(u.endswith(name) for u in _hits(url, text)):
                return
        except AssertionError:  # a 503 while the owner comes back
            pass
        assert time.monotonic() < deadline, f"{name} never found"
        time.sleep(0.1)


def _manifest(settings: Settings) -> dict[str, int]:
    from composition.components import Components

    manifest = Components(settings).manifest()
    try:
        rows = manifest.all_documents()
    finally:
        manifest.close()
    return {
        "indexed": sum(r.status == "indexed" for r in rows),
        "pending": sum(r.status == "pending" for r in rows),
        "chunks": sum(r.chunks for r in rows if r.status == "indexed"),
    }
