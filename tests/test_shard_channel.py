"""Where the index owner's socket lives when the data dir's path is too long for one: a folder of
this user's own in the temporary folder, never a name anyone could take first."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from index.contracts import Bm25Params, CollectionSpec, IndexLockedError
from index.store.channel import UnsafeSocketFolder, socket_path
from index.store.shared import SharedEdgeStore

LONG = "a-folder-name-long-enough-to-push-the-socket-path-past-what-af-unix-takes"


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder like /tmp (anyone may create names in it), this test's alone."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    return shared


def _deep(tmp_path: Path) -> Path:
    return tmp_path.joinpath(LONG, LONG, "qdrant")


def test_a_long_data_dirs_socket_is_in_a_0700_folder_of_the_users_own(
    tmp_path: Path, temp_dir: Path
) -> None:
    deep = _deep(tmp_path)
    owner = SharedEdgeStore(deep)
    client = SharedEdgeStore(deep)
    try:
        assert client.role == "client"
        address = socket_path(deep)
        assert address.parent == temp_dir / f"sluice-{os.getuid()}"
        folder = address.parent.lstat()
        assert stat.S_ISDIR(folder.st_mode) and folder.st_uid == os.getuid()
        assert stat.S_IMODE(folder.st_mode) == 0o700
        assert address.stat().st_mode & 0o077 == 0
        client.create_collection(CollectionSpec("docs__v1", "m", 8, Bm25Params(avg_doc_length=5)))
        assert owner.list_collections() == ["docs__v1"]
    finally:
        client.close()
        owner.close()


def _another_users(folder: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("making a folder another user owns needs root")
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    return "owned by uid 65534"


def _open_to_all(folder: Path) -> str:
    folder.mkdir()
    folder.chmod(0o777)
    return "writable by group or others (mode 777)"


def _a_link(folder: Path) -> str:
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder.symlink_to(elsewhere)
    return "not a folder"


@pytest.mark.parametrize("squat", [_another_users, _open_to_all, _a_link])
def test_a_socket_folder_someone_else_could_control_is_refused_with_the_reason(
    tmp_path: Path, temp_dir: Path, squat: Callable[[Path], str]
) -> None:
    folder = temp_dir / f"sluice-{os.getuid()}"
    reason = squat(folder)
    deep = _deep(tmp_path)
    with pytest.raises(UnsafeSocketFolder, match=re.escape(reason)) as refused:
        SharedEdgeStore(deep)
    assert isinstance(refused.value, IndexLockedError) and str(folder) in str(refused.value)
    assert list(folder.resolve().iterdir()) == [], "nothing was put in it"

    # From the command line: one line that says what to do, exit code 2.
    env = dict(os.environ, SLUICE_DATA_DIR=str(deep.parent), TMPDIR=str(temp_dir))
    versions = subprocess.run(
        [sys.executable, "-m", "sluice", "versions"], env=env, capture_output=True, text=True
    )
    assert versions.returncode == 2, versions.stderr
    assert reason in versions.stderr and "TMPDIR" in versions.stderr
    assert "Traceback" not in versions.stderr
