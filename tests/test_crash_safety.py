"""SIGKILL an ingest run midway, run it again: the index equals one clean run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from composition.components import Components
from config.settings import Settings

RUN = """
import sys
from pathlib import Path
from composition.components import Components
from config.settings import Settings
from flows.ingest_flow import run_sync
settings = Settings()
report = run_sync(settings, Components(settings).folder_source(Path(sys.argv[1])))
print(report.points_in_index)
"""


def _corpus(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        body = " ".join(f"Sentence {j} of document {i} about pumps and valves." for j in range(40))
        (folder / f"doc{i:03}.md").write_text(f"# Document {i}\n\n{body}\n")


def _start(folder: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        SLUICE_DATA_DIR=str(data_dir),
        SLUICE_INGEST_BATCH_SIZE="8",
        SLUICE_PARSE_WORKERS="1",
        HF_HUB_OFFLINE="1",
    )
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _indexed_rows(data_dir: Path) -> int:
    path = Settings(data_dir=data_dir).manifest_path()
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            row = db.execute("SELECT count(*) FROM documents WHERE status='indexed'").fetchone()
            return int(row[0])
    except sqlite3.Error:  # not created yet
        return 0


def _index_state(data_dir: Path) -> tuple[list[str], dict[str, set[str]], list[str]]:
    """(sorted point ids, doc_id -> versions present, collections)."""
    store = Components(Settings(data_dir=data_dir)).store()
    try:
        collection = store.resolve_alias("docs")
        assert collection is not None
        ids: list[str] = []
        versions: dict[str, set[str]] = {}
        for point_id, payload in store.scroll(collection, ["doc_id", "doc_version"]):
            ids.append(point_id)
            versions.setdefault(payload["doc_id"], set()).add(payload["doc_version"])
        return sorted(ids), versions, store.list_collections()
    finally:
        store.close()


def test_a_run_killed_midway_and_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    _corpus(folder, 60)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"

    run = _start(folder, killed_dir)
    deadline = time.monotonic() + 300
    while _indexed_rows(killed_dir) < 10:
        assert run.poll() is None, run.stderr.read().decode()[-2000:] if run.stderr else ""
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    partial = _indexed_rows(killed_dir)
    assert 10 <= partial < 60, f"killed midway: {partial} of 60 documents recorded"

    for data_dir in (killed_dir, clean_dir):
        finished = _start(folder, data_dir)
        _, err = finished.communicate(timeout=600)
        assert finished.returncode == 0, err.decode()[-2000:]

    killed_ids, killed_versions, killed_collections = _index_state(killed_dir)
    clean_ids, clean_versions, clean_collections = _index_state(clean_dir)
    assert killed_ids == clean_ids and len(set(killed_ids)) == len(killed_ids)
    assert killed_versions == clean_versions
    assert all(len(v) == 1 for v in killed_versions.values()), "no leftover versions"
    assert len(killed_versions) == 60
    assert killed_collections == clean_collections == ["docs__v1"]
