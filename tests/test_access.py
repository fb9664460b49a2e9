"""API keys and who may call: the key store, auth modes, 401/403/429, and what a key sees."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from config.settings import Settings
from retrieval_api.access import auth_required
from retrieval_api.keys import KeyStore, KeyStoreError
from tests.conftest import ingest_folder


def test_a_key_is_shown_once_stored_hashed_and_stops_working_when_revoked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "api-keys.json"
    store = KeyStore(path)
    key, record = store.create(["acme"], rate_per_s=5)
    assert key.startswith(f"slk_{record.key_id}_") and len(key) == 4 + 12 + 1 + 43
    stored = path.read_text()
    assert key.split("_")[2] not in stored and record.secret_sha256 in stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    reader = KeyStore(path)  # the API's own instance, in another process in practice
    assert reader.verify(key) == record
    assert reader.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert reader.verify(key.replace(record.key_id, "a" * 12)) is None
    assert reader.verify("not a key") is None
    store.revoke(record.key_id)
    assert reader.verify(key) is None, "revocation is read from the file on the next check"
    with pytest.raises(KeyStoreError, match="no key with id"):
        store.revoke("nosuchkeyid0")


def test_an_expired_key_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create(["acme"], expires_at=time.time() + 60)
    assert store.verify(key) == record
    assert store.verify(key, now=time.time() + 120) is None


def test_a_key_created_already_expired_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It could never be used: refused with what to do, by the store and by `sluice keys
    create` (exit 2), and nothing is written."""
    from sluice.cli.main import app

    path = tmp_path / "data" / "api-keys.json"
    with pytest.raises(KeyStoreError, match="not in the future"):
        KeyStore(path).create(["acme"], expires_at=time.time() - 1)
    monkeypatch.setenv("SLUICE_DATA_DIR", str(path.parent))
    runner = CliRunner()
    for expires in ("2020-01-01", "0d", "1999-12-31T23:00:00+01:00"):
        refused = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--expires", expires])
        assert refused.exit_code == 2, (expires, refused.output)
        assert "not in the future" in refused.output and "--expires 30d" in refused.output
    assert KeyStore(path).records() == {}


@pytest.mark.parametrize(
    ("auth", "host", "required"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "localhost", False),
        ("auto", "::1", False),
        ("auto", "0.0.0.0", True),
        ("auto", "10.1.2.3", True),
        ("auto", "api.example.com", True),
        ("required", "127.0.0.1", True),
        ("off", "0.0.0.0", False),
    ],
)
def test_keys_are_required_wherever_the_api_is_reachable_from_a_network(
    auth: str, host: str, required: bool
) -> None:
    assert auth_required(Settings(auth=auth, api_host=host)) is required  # type: ignore[arg-type]


@pytest.fixture
def api(tmp_path: Path, embedder) -> Iterator[tuple[TestClient, Settings]]:  # type: ignore[no-untyped-def]
    """An index with one document of tenant acme and one of tenant globex, served with keys
    required."""
    from retrieval_api.app import create_app

    settings = Settings(data_dir=tmp_path / "data", auth="required")
    for tenant, text in (("acme", "The acme pump impeller wears."), ("globex", "Globex valves.")):
        folder = tmp_path / tenant
        folder.mkdir()
        (folder / f"{tenant}.md").write_text(f"# {tenant}\n\n{text}\n")
        ingest_folder(settings, folder, embedder, source_name=tenant, tenant=tenant)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client, settings


def test_statuses_for_missing_bad_scoped_and_limited_keys(
    api: tuple[TestClient, Settings],
) -> None:
    client, settings = api
    keys = KeyStore(settings.api_keys_path)
    acme, _ = keys.create(["acme"], rate_per_s=1, burst=2)
    admin, _ = keys.create([], scope="admin")

    def ask(key: str | None, **body: object) -> Any:  # the test client's response
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client.post("/retrieve", json={"query": "pump valve", **body}, headers=headers)

    missing = ask(None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert ask("slk_" + "a" * 12 + "_" + "b" * 43).status_code == 401
    assert client.get("/health").status_code == 200, "/health stays open"

    own = ask(acme)
    assert own.status_code == 200
    hits = own.json()["hits"]
    assert [hit["uri"] for hit in hits] == ["acme/acme.md"], "its tenant, and no server path"
    assert own.headers["x-ratelimit-limit"] == "2"
    wider = ask(acme, filters={"tenants": ["acme", "globex"]})
    assert wider.status_code == 403 and "globex" in wider.json()["error"]["message"]
    limited = ask(acme)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"

    everything = ask(admin, top_k=10)
    uris = sorted(hit["uri"] for hit in everything.json()["hits"])
    assert len(uris) == 2 and all(uri.startswith("file:///") for uri in uris), "admin: full"
    only = ask(admin, filters={"tenants": ["globex"]})
    assert [hit["uri"].rsplit("/", 1)[1] for hit in only.json()["hits"]] == ["globex.md"]


def test_keys_commands_create_list_and_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.cli.main import app

    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["keys", "create", "--tenant", "acme", "--rate", "600/min", "--expires", "30d", "--json"],
    )
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)
    assert made["key"].startswith("slk_") and made["tenants"] == ["acme"]
    assert made["rate_per_s"] == 10 and made["expires_at"] > time.time() + 29 * 86400
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert [row["key_id"] for row in listed] == [made["key_id"]]
    assert "key" not in listed[0] and "secret_sha256" not in listed[0]
    table = runner.invoke(app, ["keys", "list"], terminal_width=200)
    (row,) = [line for line in table.stdout.splitlines() if made["key_id"] in line]
    assert "acme" in row and "10" in row and made["key"] not in table.stdout
    assert runner.invoke(app, ["keys", "revoke", made["key_id"]]).exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)[0]["revoked_at"]

    for bad, message in (
        (["--tenant", "a b"], "is not a tenant name"),
        (["--rate", "fast"], "--rate 'fast'"),
        ([], "needs a tenant"),
        (["--tenant", "x", "--scope", "root"], "--scope 'root'"),
    ):
        refused = runner.invoke(app, ["keys", "create", *bad])
        assert refused.exit_code == 2 and message in refused.output, (bad, refused.output)


def test_ready_needs_a_key_only_where_configured(api: tuple[TestClient, Settings]) -> None:
    from retrieval_api.app import create_app

    client, settings = api
    assert client.get("/ready").status_code == 200, "open by default"
    guarded = settings.model_copy(update={"ready_needs_key": True})
    key, _ = KeyStore(settings.api_keys_path).create(["acme"])
    with TestClient(create_app(guarded), base_url="http://localhost") as closed:
        assert closed.get("/ready").status_code == 401
        assert closed.get("/ready", headers={"X-API-Key": key}).status_code == 200
        assert closed.get("/health").status_code == 200
