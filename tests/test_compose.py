"""The compose check CI runs (`scripts/check_compose.py`): the project's file passes, and a
broken one fails it, which `docker-compose config --quiet` alone does not do (it exits 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.check_compose import ROOT, compose_problems

BROKEN = {
    "not YAML": "services:\n  api:\n    image: sluice\n   ports: [\n",
    "unknown condition": (
        "services:\n  api:\n    image: sluice\n    depends_on:\n      qdrant:\n"
        "        condition: service_ready\n  qdrant:\n    image: qdrant/qdrant\n"
    ),
    "unknown key": "services:\n  api:\n    image: sluice\n    restart_policy: always\n",
}


def test_the_projects_compose_file_passes() -> None:
    assert compose_problems(ROOT / "docker-compose.yml") == []


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_compose_file_fails_the_check(tmp_path: Path, name: str) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(BROKEN[name])
    plain = subprocess.run(
        [
            str(Path(sys.executable).with_name("docker-compose")),
            "-f",
            str(broken),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_compose.py"), str(broken)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1, check.stderr
    assert check.stderr.startswith(f"{broken}: "), check.stderr
    print(f"\n{name}: docker-compose config --quiet exit {plain.returncode}; check exit 1")


def _resolved() -> dict:  # type: ignore[type-arg]
    """The project's compose file as compose resolves it (anchors merged, variables set)."""
    import json
    import os

    from scripts.check_compose import VALIDATION_ENV

    done = subprocess.run(
        [str(Path(sys.executable).with_name("docker-compose")), "-f",
         str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, env=os.environ | VALIDATION_ENV, check=True,
    )  # fmt: skip
    resolved: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return resolved


def test_every_sluice_service_shares_one_deployment_state_and_index() -> None:
    """The wiring a newcomer's deployment needs: one deployment id, the state in PostgreSQL,
    the Prefect server on it, a worker that runs the sources, two replicas behind the proxy."""
    services = _resolved()["services"]
    sluice = {"deploy", "worker", "api-1", "api-2"}
    assert sluice <= set(services) and {"postgres", "proxy"} <= set(services)
    for name in sluice:
        env = services[name]["environment"]
        assert env["SLUICE_DEPLOYMENT_ID"] == "compose", name
        assert env["SLUICE_STATE_URL"].startswith("postgresql://sluice:"), name
        assert env["SLUICE_STATE_URL"].endswith("@postgres:5432/sluice"), name
        assert env["SLUICE_QDRANT_URL"] == "http://qdrant:6333", name
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    prefect = services["prefect-server"]["environment"]
    assert prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert services["deploy"]["command"] == ["sluice", "deploy", "--work-pool", "sluice"]
    assert services["worker"]["command"][:5] == ["prefect", "worker", "start", "--pool", "sluice"]
    assert services["worker"]["depends_on"]["deploy"]["condition"] == (
        "service_completed_successfully"
    )
    proxy = " ".join(services["proxy"]["command"])
    assert "--to api-1:8000" in proxy and "--to api-2:8000" in proxy
    published = {
        name for name, service in services.items()
        for port in service.get("ports", []) if port.get("host_ip") != "127.0.0.1"
    }  # fmt: skip
    assert published == {"proxy"}
    for name in ("api-1", "api-2"):
        assert services[name]["environment"]["SLUICE_AUTH"] == "required"
