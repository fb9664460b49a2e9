"""`POST /sources/{name}/sync` and `GET /runs/{id}`: a sync asked for over HTTP runs as a flow
run of the source's deployment, served by a real `sluice deploy` on a real Prefect server, and
its report is what `/runs/{id}` answers; who may ask, and what a bad request gets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from retrieval_api.app import create_app
from retrieval_api.keys import KeyStore
from tests.conftest import ingest_folder


def test_a_webhook_sync_runs_the_deployment_and_reports_it(
    tmp_path: Path, prefect_server: None, embedder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import get_current_settings

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Pumps\n\nPumps move water through the plant.\n")
    (tmp_path / "outside.md").write_text("# Outside\n\nNever to be read.\n")
    config = tmp_path / "sluice.toml"
    config.write_text(f'[[sources]]\ntype = "local"\nname = "plant"\npath = "{folder}"\n')
    api = str(get_current_settings().api.url)
    monkeypatch.setenv("PREFECT_API_URL", api)
    env = dict(os.environ, SLUICE_CONFIG_FILE=str(config), SLUICE_DATA_DIR=str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    settings = Settings(data_dir=tmp_path / "data", auth="required")
    ingest_folder(settings, folder, embedder, source_name="plant")
    keys = KeyStore(settings.api_keys_path)
    admin, _ = keys.create([], scope="admin")
    reader, _ = keys.create(["default"])
    deploy = subprocess.Popen(
        [sys.executable, "-m", "sluice", "deploy"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with TestClient(create_app(settings), base_url="http://localhost") as client:
            as_admin = {"Authorization": f"Bearer {admin}"}
            assert client.post("/sources/plant/sync").status_code == 401
            refused = client.post(
                "/sources/plant/sync", headers={"Authorization": f"Bearer {reader}"}
            )
            assert refused.status_code == 403
            unknown = client.post("/sources/nope/sync", headers=as_admin)
            assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
            bad = client.post("/sources/plant/sync", json={"paths": "a.md"}, headers=as_admin)
            assert bad.status_code == 422
            assert client.get("/runs/not-a-run", headers=as_admin).status_code == 404
            (folder / "b.md").write_text("# Valves\n\nA gate valve stops the flow.\n")
            body = {"paths": ["b.md", "../outside.md"]}
            deadline = time.monotonic() + 180
            while (
                started := client.post("/sources/plant/sync", json=body, headers=as_admin)
            ).status_code == 503:
                assert deploy.poll() is None, deploy.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
                assert time.monotonic() < deadline, started.text  # the deployment is not served yet
                time.sleep(1)
            assert started.status_code == 202, started.text
            run = started.json()
            assert run["source"] == "plant" and run["paths"] == body["paths"]
            while (status := client.get(f"/runs/{run['run_id']}", headers=as_admin).json())[
                "state"
            ] not in ("COMPLETED", "FAILED", "CRASHED"):
                assert time.monotonic() < deadline + 120, status
                time.sleep(0.5)
            assert status["state"] == "COMPLETED", status
            report = status["report"]
            assert report["new"] == 1 and report["files_seen"] == 1, "b.md alone; never outside"
            hits = client.post(
                "/retrieve", json={"query": "gate valve", "mode": "bm25"}, headers=as_admin
            ).json()["hits"]
            assert hits and hits[0]["uri"].endswith("b.md")
            assert not any("outside" in hit["uri"] for hit in hits)
            # run warm in `sluice deploy` (a run started in a new process reports no lag)
            assert report["lag_s"] is not None and 0 < report["lag_s"] < 120, report
            (folder / "b.md").write_text("# Valves\n\nA globe valve throttles the flow.\n")
            again = client.post("/sources/plant/sync", json={"paths": ["b.md"]}, headers=as_admin)
            while (
                status := client.get(f"/runs/{again.json()['run_id']}", headers=as_admin).json()
            )["state"] not in ("COMPLETED", "FAILED", "CRASHED"):
                assert time.monotonic() < deadline + 180, status
                time.sleep(0.5)
            assert status["state"] == "COMPLETED" and status["report"]["changed"] == 1, status

            # many callers at once: each gets its own run, each run its own file, once
            for n in range(8):
                (folder / f"c{n}.md").write_text(f"# Seal {n}\n\nSeal kit zq{n}x fits pump {n}.\n")

            def ask(n: int) -> str:
                answer = client.post(
                    "/sources/plant/sync", json={"paths": [f"c{n}.md"]}, headers=as_admin
                )
                assert answer.status_code == 202, answer.text
                return str(answer.json()["run_id"])

            def state(run_id: str) -> dict[str, Any]:
                return dict(client.get(f"/runs/{run_id}", headers=as_admin).json())

            done = ("COMPLETED", "FAILED", "CRASHED")
            with ThreadPoolExecutor(8) as pool:
                run_ids = list(pool.map(ask, range(8)))
                assert len(set(run_ids)) == 8
                while True:
                    statuses = list(pool.map(state, run_ids))
                    if all(s["state"] in done for s in statuses):
                        break
                    assert time.monotonic() < deadline + 600, statuses
                    time.sleep(1)
            assert [s["report"]["new"] for s in statuses] == [1] * 8, statuses
            for n in range(8):
                hits = client.post(
                    "/retrieve", json={"query": f"zq{n}x", "mode": "bm25"}, headers=as_admin
                ).json()["hits"]
                assert [h["uri"].rsplit("/", 1)[-1] for h in hits] == [f"c{n}.md"], hits
    finally:
        deploy.terminate()
        deploy.wait(timeout=60)


def test_paths_are_for_folders_and_s3_and_urls_for_http_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text(
        f'[[sources]]\ntype = "local"\nname = "plant"\npath = "{tmp_path}"\n'
        '[[sources]]\ntype = "http"\nname = "site"\nurls = ["https://example.org/a"]\n'
    )
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        urls = client.post("/sources/plant/sync", json={"urls": ["https://example.org/a"]})
        assert urls.status_code == 422 and "`urls` is for http" in urls.json()["error"]["message"]
        paths = client.post("/sources/site/sync", json={"paths": ["a"]})
        assert paths.status_code == 422 and "`paths` is for folders" in paths.text
