"""The data dir's own Prefect server: started by the first command that runs a flow, reused by
the next, recording each run with its logs, and gone by itself once idle."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import Result

from tests.conftest import adopt_env, shell_env


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
    env = shell_env(SLUICE_DATA_DIR=str(data), SLUICE_PREFECT_SERVER_IDLE_MINUTES="0.5")

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


def test_server_status_shows_it_and_stop_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.local_server import ensure_local_server
    from sluice.cli.main import app

    data = tmp_path / "data"
    adopt_env(monkeypatch, shell_env(SLUICE_DATA_DIR=str(data)))
    runner = CliRunner()

    def server(*args: str) -> Result:
        return runner.invoke(app, ["server", *args], terminal_width=300)

    before = server("status", "--json")
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["running"] is False
    assert "the next command that records a run starts one" in server("status").stdout

    home = (data / "prefect").resolve()
    url = ensure_local_server(home, 600)  # as the first command recording a run starts it
    pid = json.loads((home / "server.json").read_text())["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert str(home).encode() in argv, argv  # `ps` tells whose server it is

    shown = json.loads(server("status", "--json").stdout)
    assert shown["running"] and shown["answers"] and shown["pid"] == pid
    assert shown["api"] == url and shown["ui"] == url.removesuffix("/api")
    assert shown["data_dir"] == str(data.resolve()) and shown["idle_minutes"] == 60
    said = " ".join(server("status").stdout.split())
    assert f"PREFECT_API_URL={url} prefect" in said and f"pid {pid}" in said

    stopped = server("stop")
    assert stopped.exit_code == 0 and f"pid {pid}" in stopped.stdout, stopped.output
    assert not _alive(pid)
    assert json.loads(server("status", "--json").stdout)["running"] is False
    again = server("stop")
    assert again.exit_code == 0 and "no Prefect server runs" in again.stderr


def test_a_command_still_running_keeps_an_idle_server_up(tmp_path: Path) -> None:
    """A command may go longer than the idle time without a request (a model loading, one long
    task); the server must not go from under it, and must go once it has ended."""
    from flows.local_server import ensure_local_server

    home = (tmp_path / "data" / "prefect").resolve()
    command = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from flows.local_server import register_client; register_client(Path(sys.argv[1])); "
            "print('registered', flush=True); time.sleep(600)",
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        ensure_local_server(home, 2.0)
        assert command.stdout is not None and command.stdout.readline() == "registered\n"
        pid = json.loads((home / "server.json").read_text())["pid"]
        time.sleep(12)  # six idle times
        assert _alive(pid), "the server stopped under a running command"
    finally:
        command.kill()
        command.wait()
    deadline = time.monotonic() + 60
    while _alive(pid):
        assert time.monotonic() < deadline, "the server outlived its last command"
        time.sleep(0.5)
