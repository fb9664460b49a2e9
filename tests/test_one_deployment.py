"""One running Sluice on the embedded engine: `sluice serve` answers /retrieve throughout while
other processes ingest, inspect and retry on the same data dir, and a SIGKILLed API loses
nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, sluice_serving, wait_until_answering
from tests.retrieve_watch import RetrieveWatch

DOCS = {
    "pumps.md": "# Pumps\n\nA centrifugal pump moves water with a spinning impeller.\n",
    "solar.md": "# Solar power\n\nSolar panels charge the batteries; an inverter makes current.\n",
    "garden.md": "# Garden\n\nWater the tomatoes every morning from the rain tank.\n",
}


def _env(data_dir: Path) -> dict[str, str]:
    from prefect.settings import get_current_settings

    return dict(
        os.environ,
        SLUICE_DATA_DIR=str(data_dir),
        PREFECT_API_URL=str(get_current_settings().api.url),
    )


def _sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _hits(url: str, query: str) -> list[dict[str, Any]]:
    answer = httpx.post(f"{url}/retrieve", json={"query": query, "top_k": 10}, timeout=60)
    assert answer.status_code == 200, answer.text
    hits: list[dict[str, Any]] = answer.json()["hits"]
    return hits


def test_commands_from_other_processes_work_while_the_api_serves(
    tmp_path: Path, prefect_server: None
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    # One of three documents deleted is past the default guard against partial listings.
    env = dict(_env(tmp_path / "data"), SLUICE_MAX_DELETED_FRACTION="0.5")
    with sluice_serving(env) as (url, _):
        poller = RetrieveWatch(url, {"query": "water pump"})
        try:
            first = _sluice(env, "ingest", str(folder), "--json")
            assert first.returncode == 0, first.stderr[-3000:]
            report = json.loads(first.stdout)
            assert report["new"] == 3 and report["points_in_index"] == 3
            # What the run wrote is visible the moment it reports success.
            assert _hits(url, "impeller")[0]["uri"].endswith("pumps.md")

            (folder / "pumps.md").write_text("# Pumps\n\nA pump's impeller spins in a volute.\n")
            (folder / "solar.md").unlink()
            (folder / "wind.md").write_text("# Wind\n\nA turbine's blades turn a generator.\n")
            second = _sluice(env, "ingest", str(folder), "--json")
            assert second.returncode == 0, second.stderr[-3000:]
            changes = json.loads(second.stdout)
            assert (changes["new"], changes["changed"], changes["deleted"]) == (1, 1, 1)
            uris = {h["uri"].rsplit("/", 1)[-1] for h in _hits(url, "turbine generator inverter")}
            assert "wind.md" in uris and "solar.md" not in uris
            assert "volute" in _hits(url, "impeller volute")[0]["text"]

            status = _sluice(env, "status", "--json")
            assert status.returncode == 0, status.stderr[-3000:]
            index = json.loads(status.stdout)["indexes"]["docs"]
            assert (index["points"], index["documents"]) == (3, 3)
            versions = _sluice(env, "versions", "--json")
            assert versions.returncode == 0, versions.stderr[-3000:]
            assert [v["state"] for v in json.loads(versions.stdout)["versions"]] == ["serving"]
            retried = _sluice(env, "retry-failed")
            assert retried.returncode == 0, retried.stderr[-3000:]
        finally:
            poller.stop()
    assert poller.problems == []
    assert len(poller.statuses) > 20 and set(poller.statuses) == {200}


def test_an_api_killed_mid_ingest_loses_and_duplicates_nothing(
    tmp_path: Path, prefect_server: None
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(40):
        body = " ".join(f"Sentence {j} of note {i} about pumps and valves." for j in range(30))
        (folder / f"note{i:02}.md").write_text(f"# Note {i}\n\n{body}\n")
    env = dict(_env(tmp_path / "data"), SLUICE_INGEST_BATCH_SIZE="4")
    with sluice_serving(env) as (_, server):
        ingest = subprocess.Popen(
            [sys.executable, "-m", "sluice", "ingest", str(folder), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Kill the owner of the shards while the ingest writes through it.
        manifest = tmp_path / "data" / "manifests" / "docs.sqlite"
        deadline = time.monotonic() + 300
        while not manifest.exists() or _indexed(manifest) < 3:
            assert ingest.poll() is None, ingest.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the ingest never started writing"
            time.sleep(0.2)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        out, err = ingest.communicate(timeout=600)
    assert ingest.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["new"] == 40 and report["failed"] == 0
    with sluice_serving(env) as (url, _):
        status = _sluice(env, "status", "--json")
        index = json.loads(status.stdout)["indexes"]["docs"]
        assert index["documents"] == 40 and index["points"] == report["points_in_index"]
        assert _hits(url, "note 7 pumps valves")
        again = _sluice(env, "ingest", str(folder), "--json")
        assert again.returncode == 0, again.stderr[-3000:]
        rerun = json.loads(again.stdout)
        assert rerun["unchanged"] == 40 and rerun["points_in_index"] == index["points"]


def _indexed(manifest: Path) -> int:
    import sqlite3

    with sqlite3.connect(manifest) as db:
        try:
            row = db.execute("select count(*) from documents where status = 'indexed'").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


def _switches(models: list[str]) -> list[str]:
    """The models in the order they answered, each run of repeats collapsed to one."""
    return [m for i, m in enumerate(models) if i == 0 or models[i - 1] != m]


@contextmanager
def _real_prefect_server(home: Path) -> Iterator[str]:
    """`prefect server start` (SQLite): unlike the test harness's ephemeral server it runs the
    scheduler, here every 5 s, so a cron schedule makes real scheduled runs."""
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
    )
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_answering(f"{api}/health", server, 300, "prefect server")
        yield api
    finally:
        server.terminate()
        server.wait(timeout=60)


# Every run has each part: a scheduled run (test_deploy.py), a switch and a rollback under a
# serving API (test_reembed.py); the three in one scenario take the longest of any test.
@pytest.mark.full
def test_a_scheduled_run_a_reembed_and_a_rollback_while_the_api_serves(tmp_path: Path) -> None:
    from tests.derived_models import widened

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        '{"query": "impeller of a centrifugal pump", "relevant": ["pumps.md"]}\n'
        '{"query": "inverter for the batteries", "relevant": ["solar.md"]}\n'
    )
    config = tmp_path / "sluice.toml"
    config.write_text(
        f'[[sources]]\ntype = "local"\nname = "plant"\npath = "{folder}"\nschedule = "* * * * *"\n'
    )
    wide = str(widened(tmp_path / "wide"))
    packaged = "sentence-transformers/all-MiniLM-L6-v2"
    with (
        _real_prefect_server(tmp_path / "prefect") as prefect_api,
        sluice_serving(
            dict(os.environ, SLUICE_DATA_DIR=str(tmp_path / "data"), PREFECT_API_URL=prefect_api)
        ) as (url, _),
    ):
        env = dict(
            os.environ,
            SLUICE_DATA_DIR=str(tmp_path / "data"),
            PREFECT_API_URL=prefect_api,
            PREFECT_RUNNER_POLL_FREQUENCY="2",
            SLUICE_CONFIG_FILE=str(config),
            SLUICE_GOLDEN_SET=str(golden),
            SLUICE_GATE_MODE="dense",
        )
        watcher = RetrieveWatch(url, {"query": "water pump"})
        deploy = subprocess.Popen(
            [sys.executable, "-m", "sluice", "deploy"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            # The scheduled run (every minute) ingests the source through the serving API.
            deadline = time.monotonic() + 300
            while not any(h["uri"].endswith("pumps.md") for h in _hits(url, "impeller")):
                assert deploy.poll() is None, deploy.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "no scheduled run landed"
                time.sleep(1)
            deploy.terminate()
            deploy.wait(timeout=60)

            switched = _sluice(env, "reembed", "--model", wide, "--json")
            assert switched.returncode == 0, switched.stderr[-3000:]
            assert json.loads(switched.stdout)["outcome"] == "switched"
            assert _answering_model(url) == wide

            rolled = _sluice(env, "rollback", "--json")
            assert rolled.returncode == 0, rolled.stderr[-3000:]
            assert json.loads(rolled.stdout)["serving"] == "docs__v1"
            assert _answering_model(url) == packaged
            status = json.loads(_sluice(env, "status", "--json").stdout)["indexes"]["docs"]
            assert (status["collection"], status["points"]) == ("docs__v1", 3)
        finally:
            watcher.stop()
            if deploy.poll() is None:
                deploy.kill()
    assert watcher.problems == []
    assert set(watcher.statuses) == {200}
    # Each switch is seen once, and never flaps back.
    assert _switches(watcher.models()) == [packaged, wide, packaged]


def _answering_model(url: str) -> str:
    answer = httpx.post(f"{url}/retrieve", json={"query": "pump"}, timeout=60).json()
    return str(answer["index"]["embedding_model"])
