"""Paging cursors are signed with the server's key and bounded by its own limit; the key is
made once per data dir and shared by every process on it."""

from __future__ import annotations

import multiprocessing
import os
import stat
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from config.settings import Settings
from retrieval_api.cursor import Cursor, CursorCodec, cursor_key, fingerprint, shared_secret
from sluice_client.request import RetrieveRequest

BODY = RetrieveRequest(query="pumps")
CODEC = CursorCodec(b"k" * 32, max_pool=1000)
CURSOR = Cursor("docs__v1", "stamp-1", 200, 10, fingerprint(BODY, None))


def _refusal(codec: CursorCodec, token: str, body: RetrieveRequest = BODY) -> str:
    with pytest.raises(HTTPException) as refused:
        codec.decode(token, body, None)
    assert refused.value.status_code == 400
    return str(refused.value.detail)


def test_a_cursor_the_server_signed_reads_back() -> None:
    assert CODEC.decode(CODEC.encode(CURSOR), BODY, None) == CURSOR


@given(at=st.integers(min_value=0), to=st.sampled_from("AQgw-_9zB"))
def test_any_change_to_a_signed_cursor_is_refused(at: int, to: str) -> None:
    token = CODEC.encode(CURSOR)
    at %= len(token)
    changed = token[:at] + to + token[at + 1 :]
    if changed != token:  # the signature covers the payload's text, not only what it decodes to
        assert "cursor:" in _refusal(CODEC, changed)


def test_a_cursor_signed_with_another_key_is_refused() -> None:
    other = CursorCodec(b"o" * 32, max_pool=1000)
    assert "signature" in _refusal(CODEC, other.encode(CURSOR))


def test_a_pool_beyond_the_servers_limit_is_refused_even_when_signed() -> None:
    deep = Cursor("docs__v1", "stamp-1", 100_000, 10, fingerprint(BODY, None))
    assert "beyond this server's candidate pool limit (1000)" in _refusal(CODEC, CODEC.encode(deep))
    assert CODEC.decode(CODEC.encode(Cursor("c", "s", 1000, 0, CURSOR.request)), BODY, None)


def test_a_cursor_of_another_request_or_other_tenants_is_refused() -> None:
    token = CODEC.encode(CURSOR)
    assert "different request" in _refusal(CODEC, token, RetrieveRequest(query="valves"))
    with pytest.raises(HTTPException):
        CODEC.decode(token, BODY, ["acme"])
    top_k_changed = RetrieveRequest(query="pumps", top_k=3)
    assert CODEC.decode(token, top_k_changed, None) == CURSOR


def _secret_of(path: str, start: Barrier, into: Queue[bytes]) -> None:
    start.wait()  # all at once: the race a create-once must win
    into.put(shared_secret(Path(path)))


def test_every_process_on_a_data_dir_gets_the_same_secret_made_once(tmp_path: Path) -> None:
    """Made 0600 by the code itself, whatever the umask (0 here)."""
    path = tmp_path / "data" / "cursor-secret"
    spawn = multiprocessing.get_context("spawn")
    start, into = spawn.Barrier(8), spawn.Queue()
    workers = [spawn.Process(target=_secret_of, args=(str(path), start, into)) for _ in range(8)]
    umask = os.umask(0)
    try:
        for worker in workers:
            worker.start()
        secrets = [into.get(timeout=120) for _ in workers]
    finally:
        os.umask(umask)
        for worker in workers:
            worker.join(timeout=60)
    assert len(set(secrets)) == 1 and len(secrets[0]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["cursor-secret"], "no leftovers"
    assert shared_secret(path) == secrets[0]


def test_a_configured_secret_replaces_the_data_dirs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", cursor_secret=SecretStr("s" * 20))
    assert cursor_key(settings) == b"s" * 20
    assert not settings.cursor_secret_path.exists()
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path / "data", cursor_secret=SecretStr("short"))


def test_an_empty_secret_file_is_an_error_not_an_empty_key(tmp_path: Path) -> None:
    path = tmp_path / "cursor-secret"
    path.write_text("")
    with pytest.raises(ValueError, match="no cursor secret"):
        shared_secret(path)
