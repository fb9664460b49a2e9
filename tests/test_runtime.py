"""Process set-up: what Sluice writes is its user's alone (0700 folders, 0600 files), a data dir
open to others is tightened on first use, and the processes it starts inherit it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import shell_env, sluice_serving


def _sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sluice", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def _env(data: Path, **more: str) -> dict[str, str]:
    """A shell's environment with nothing of the test session's Sluice or Prefect settings:
    the data dir's own Prefect home and server, parse workers as configured by default."""
    return shell_env(SLUICE_DATA_DIR=str(data), **more)


def _open_to_others(data: Path) -> list[str]:
    """Every path in `data` (itself included) that group or others may read, write or enter."""
    found = []
    for path in (data, *sorted(data.rglob("*"))):
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{stat.filemode(mode)} {path.relative_to(data.parent)}")
    return found


def test_a_fresh_data_dir_after_an_ingest_and_serve_is_its_owners_alone(tmp_path: Path) -> None:
    folder = tmp_path / "manuals"
    folder.mkdir()
    for n in range(3):
        (folder / f"pump{n}.md").write_text(f"# Pump {n}\n\nThe impeller of pump {n} wears.\n")
    data = tmp_path / "data"
    env = _env(data, SLUICE_PREFECT_SERVER_IDLE_MINUTES="0.5", SLUICE_AUTH="required")
    try:
        ingest = _sluice(env, "ingest", str(folder), "--json")
        assert ingest.returncode == 0, ingest.stderr
        assert (data / "prefect" / "server.json").exists(), "runs went to the data dir's server"
        made = _sluice(env, "keys", "create", "--tenant", "default", "--json")
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["key"]
        with sluice_serving(env) as (url, _):
            answer = httpx.post(
                f"{url}/retrieve",
                json={"query": "impeller wear"},
                headers={"X-API-Key": key},
                timeout=60,
            )
            assert answer.status_code == 200 and answer.json()["hits"], answer.text
        assert any((data / "query-log").iterdir()), "the query was logged"
        assert any((data / "embedding-cache").iterdir())
    finally:
        _stop_prefect_server(data)
    assert _open_to_others(data) == []


def _stop_prefect_server(data: Path) -> None:
    """The data dir's Prefect server this test's ingest started (it would stop when idle)."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, KeyError):
        pid = json.loads((data / "prefect" / "server.json").read_text())["pid"]
        os.kill(int(pid), signal.SIGTERM)


def test_an_existing_data_dir_open_to_others_is_tightened_on_first_use_with_a_note(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = _env(data)
    assert _sluice(env, "keys", "create", "--tenant", "acme").returncode == 0
    shard = data / "qdrant" / "collections" / "docs__v1" / "segments"
    shard.mkdir(parents=True)
    (shard / "wal.bin").write_bytes(b"a tenant's text")
    (data / "manifests").mkdir(exist_ok=True)
    (data / "manifests" / "docs.sqlite").write_bytes(b"")
    for path in (data, *data.rglob("*")):  # as releases before this one made them
        path.chmod(0o755 if path.is_dir() else 0o644)
    opened = len(_open_to_others(data))

    first = _sluice(env, "keys", "list", "--json")
    assert first.returncode == 0, first.stderr
    assert _open_to_others(data) == []
    note = [line for line in first.stderr.splitlines() if "readable by other users" in line]
    assert len(note) == 1 and f"note: {opened} file(s) and folder(s)" in note[0], first.stderr
    assert stat.S_IMODE((shard / "wal.bin").stat().st_mode) == 0o600
    assert stat.S_IMODE(shard.stat().st_mode) == 0o700

    again = _sluice(env, "keys", "list", "--json")
    assert again.returncode == 0 and "readable by other users" not in again.stderr
