"""`sluice deploy` serves configured sources as scheduled deployments on a real Prefect server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from config.settings import Settings
from ingest.manifest import Manifest


def test_deploy_serves_each_source_on_its_schedule_and_runs_it(
    tmp_path: Path, prefect_server: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import get_current_settings

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Pumps\n\nPumps move water through the plant.\n")
    config = tmp_path / "sluice.toml"
    config.write_text(
        f"""
[[sources]]
type = "local"
name = "plant-docs"
path = "{folder}"
schedule = "*/15 * * * *"

[[sources]]
type = "http"
name = "manual-site"
urls = ["http://127.0.0.1:9/never-fetched"]
"""
    )
    api = str(get_current_settings().api.url)
    env = dict(
        os.environ,
        SLUICE_CONFIG_FILE=str(config),
        SLUICE_DATA_DIR=str(tmp_path / "data"),
        PREFECT_API_URL=api,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "deploy"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    deployment = client.read_deployment_by_name("ingest/plant-docs")
                    manual = client.read_deployment_by_name("ingest/manual-site")
                    break
                except Exception:
                    assert server.poll() is None, server.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, "deployments never appeared"
                    time.sleep(1)
            assert [s.schedule.cron for s in deployment.schedules] == ["*/15 * * * *"]  # type: ignore[union-attr]
            assert manual.schedules == []
            assert deployment.parameters == {"source": "plant-docs", "wait_for_lock_s": 3600}

        flow_run = run_deployment("ingest/plant-docs", timeout=600)
        assert isinstance(flow_run, FlowRun)
        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
        from flows.artifacts import artifact_key

        key = artifact_key("ingest", Settings(data_dir=tmp_path / "data"), "plant-docs")
        assert re.fullmatch(r"ingest-docs-plant-docs-[0-9a-f]{8}", key)
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
            )
            assert len(artifacts) == 1 and "plant-docs" in str(artifacts[0].description)
            assert "| 1 | 0 | 0 | 0 | 0 |" in str(artifacts[0].data), "1 new document"
        manifest = Manifest(Settings(data_dir=tmp_path / "data").manifest_path())
        (run,) = manifest.runs()
        manifest.close()
        assert run.source == "plant-docs" and run.report and run.report["new"] == 1
        assert (run.state, run.external_id) == ("completed", str(flow_run.id))
    finally:
        server.terminate()
        server.wait(timeout=60)
