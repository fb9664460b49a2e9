"""A process stopped (SIGSTOP, Ctrl-Z) while it holds a lock of the shared state, under an API
that needs it, on both state backends: requests get 503 `state_unavailable` with Retry-After
within the wait (`STATE_WAIT_S`), never a hang or a 500, and answer again when the process
resumes; on PostgreSQL also while it stays stopped, once the server ends its idle transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from config.sources import DEFAULT_TENANT
from retrieval_api.access import key_store
from retrieval_api.app import create_app
from state.database import IDLE_IN_TRANSACTION_S, STATE_WAIT_S
from tests.conftest import ingest_folder

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import os, signal, sys
from sqlalchemy import text
from retrieval_api.rate_buckets import RateBuckets
from tests.state_contract import open_from_spec
db = open_from_spec(sys.argv[1], "shared", None)
RateBuckets(db)
with db.transaction() as connection:
    connection.execute(
        text("INSERT INTO rate_buckets (key, tat) VALUES (:key, 0)"
             " ON CONFLICT (key) DO UPDATE SET tat = rate_buckets.tat"),
        {"key": sys.argv[2]},
    )
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
print("committed", flush=True)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: object
) -> Iterator[tuple[Settings, str, str]]:
    """Settings with an indexed folder, a rate-limited key, and the spec the holder opens."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    settings = Settings(data_dir=tmp_path / "data", auth="required", state_url=url)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    ingest_folder(settings, folder, embedder)
    secret, _ = key_store(settings).create([DEFAULT_TENANT], rate_per_s=1000, burst=1000)
    yield settings, secret, url or str(settings.data_dir)


def _ask(client: TestClient, secret: str) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    response = client.post(
        "/retrieve", json={"query": "impeller"}, headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status_code, {**response.headers, **response.json()}, time.monotonic() - started


def test_a_stopped_holder_gets_503_in_time_and_service_comes_back(
    served: tuple[Settings, str, str],
) -> None:
    settings, secret, spec = served
    key_id = secret[4:16]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert _ask(client, secret)[0] == 200
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, spec, key_id],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            held_at = time.monotonic()
            status, body, seconds = _ask(client, secret)
            assert status == 503, body
            assert body["error"]["code"] == "state_unavailable"  # type: ignore[index]
            assert body["retry-after"] == str(STATE_WAIT_S)
            assert STATE_WAIT_S - 1 < seconds < STATE_WAIT_S + 5, seconds
            if spec.startswith("postgresql"):
                # The server ends the stopped session's transaction: answers while it is stopped.
                time.sleep(max(0.0, held_at + IDLE_IN_TRANSACTION_S + 2 - time.monotonic()))
                assert _ask(client, secret)[0] == 200
                assert holder.poll() is None, "still stopped"
            os.kill(holder.pid, signal.SIGCONT)
            holder.wait(timeout=30)
            status, body, _ = _ask(client, secret)
            assert status == 200, body
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.wait()
