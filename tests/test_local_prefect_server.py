"""The data dir's own Prefect server: started by the first command that runs a flow, reused by
the next, recording each run with its logs, and gone by itself once idle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sluice", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def _alive(pid: int) -> bool:
    """Running, not a zombie nobody reaped (Linux). Asking the server would keep it busy."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_runs_are_recorded_on_a_reused_server_that_stops_when_idle(tmp_path: Path) -> None:
    folder = tmp_path / "manuals"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    env |= {"SLUICE_DATA_DIR": str(data), "SLUICE_PREFECT_SERVER_IDLE_MINUTES": "0.5"}

    first = _sluice(env, "ingest", str(folder), "--json")
    assert first.returncode == 0, first.stderr
    state = json.loads((data / "prefect" / "server.json").read_text())
    assert state["url"].startswith("http://127.0.0.1:") and _alive(state["pid"])
    second = _sluice(env, "ingest", str(folder), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads((data / "prefect" / "server.json").read_text())["pid"] == state["pid"]
    assert "starting this data dir's Prefect server" in first.stderr
    assert "starting" not in second.stderr, "the second command reuses the running server"

    runs = json.loads(_sluice(env, "runs", "--json").stdout)["runs"]
    assert [run["new"] for run in runs] == [0, 1]
    flow_run_id = runs[0]["flow_run_id"]
    api = state["url"]
    flow_run = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
    assert flow_run["state"]["type"] == "COMPLETED"
    logs = httpx.post(
        f"{api}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}},
        timeout=10,
    ).json()
    sluice_lines = [log["message"] for log in logs if log["name"] == "sluice.ingest"]
    assert any("1 listed; to read 0, unchanged 1" in line for line in sluice_lines), logs
    assert any("0 new, 0 changed, 1 unchanged" in log["message"] for log in logs), logs

    deadline = time.monotonic() + 120
    while _alive(state["pid"]):
        assert time.monotonic() < deadline, "the server outlived its idle time"
        time.sleep(1)
