"""The state contract (`tests/state_contract.py`) on both backends: SQLite files in a data dir,
and PostgreSQL on a real server the suite starts (tests/postgres_server.py)."""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path

import pytest

from ingest.manifest import Manifest
from tests.state_contract import CONTRACTS, Opener, StateContract, open_from_spec


class TestSqliteState(StateContract):
    @pytest.fixture
    def state_spec(self, tmp_path: Path) -> str:
        return str(tmp_path)

    @pytest.fixture
    def opener(self, state_spec: str) -> Opener:
        return partial(open_from_spec, state_spec)


class TestPostgresState(StateContract):
    @pytest.fixture
    def state_spec(self, postgres_url: str) -> str:
        return postgres_url

    @pytest.fixture
    def opener(self, state_spec: str) -> Opener:
        return partial(open_from_spec, state_spec)


def test_the_contracts_cover_every_method_of_the_manifest() -> None:
    methods = {
        name
        for name, _ in inspect.getmembers(Manifest, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    covered = set().union(*(contract.COVERS for contract in CONTRACTS))
    assert covered == methods
