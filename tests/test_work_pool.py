"""`sluice deploy --work-pool`: the sources' deployments registered on a Prefect work pool, and
a `prefect worker` started elsewhere (another folder, none of the deploying shell's settings)
running one into the same index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sluice.cli.main import app


def test_a_worker_runs_a_deployment_registered_on_its_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import get_current_settings

    folder = tmp_path / "plant"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller of the pump wears out.\n")
    config = tmp_path / "sluice.toml"
    config.write_text(f'[[sources]]\ntype = "local"\nname = "plant"\npath = "{folder}"\n')
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_QDRANT_API_KEY", "never-stored-in-prefect")

    registered = CliRunner().invoke(app, ["deploy", "--work-pool", "plant-pool"])
    assert registered.exit_code == 0, registered.output
    assert "prefect worker start --pool plant-pool" in " ".join(registered.stdout.split())
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("plant-pool").type == "process"
        deployment = client.read_deployment_by_name("ingest/plant")
    assert deployment.work_pool_name == "plant-pool"
    env = deployment.job_variables["env"]
    assert env["SLUICE_DATA_DIR"] == str((tmp_path / "data").resolve())
    assert env["SLUICE_CONFIG_FILE"] == str(config)
    assert "SLUICE_QDRANT_API_KEY" not in env

    api = str(get_current_settings().api.url)
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    worker_env |= {
        "PREFECT_API_URL": api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "SLUICE_MODEL_EXPORTS_DIR": os.environ["SLUICE_MODEL_EXPORTS_DIR"],
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "plant-pool"],
        env=worker_env,
        cwd=elsewhere,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),  # a pipe nobody reads would stop a worker that logs much
        start_new_session=True,
    )
    try:
        run = run_deployment("ingest/plant", timeout=0)
        assert isinstance(run, FlowRun)
        deadline = time.monotonic() + 300
        with get_client(sync_client=True) as client:
            while not (state := client.read_flow_run(run.id).state) or not state.is_final():
                assert worker.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the worker never finished the run"
                time.sleep(1)
        assert state.is_completed(), state
    finally:
        # The run is what is tested, not how fast a worker shuts down: under load a Prefect
        # worker took over 60 s to exit on SIGTERM. Its process group goes, runs included.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)
    assert not (elsewhere / ".sluice").exists(), "the run wrote where the worker was started"
    status = CliRunner().invoke(app, ["status", "--json"])
    index = json.loads(status.stdout)["indexes"]["docs"]
    assert (index["documents"], index["points"]) == (1, 1)
