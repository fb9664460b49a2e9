"""The client distribution (clients/python): it installs alone, with httpx and pydantic only, and
its request and response models are the server's schema."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from config.settings import Settings
from retrieval_api.app import create_app
from sluice_client import request, response

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "python"


def _spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _properties(model: type[BaseModel], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    return {name: field.get("type") for name, field in schema["properties"].items()}


def _published(spec: dict[str, Any], name: str) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    found = schemas.get(name) or schemas[f"{name}-Output"]
    return {key: field.get("type") for key, field in found["properties"].items()}


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        (request.RetrieveRequest, "validation"),
        (response.RetrieveResponse, "serialization"),
        (response.Hit, "serialization"),
        (response.ErrorResponse, "serialization"),
        (response.Readiness, "serialization"),
    ],
)
def test_the_servers_published_schema_is_the_clients_models(
    model: type[BaseModel], mode: str
) -> None:
    """A field the server answers or accepts that the client's models lack (or the other way
    round) fails here: both must be one definition."""
    assert _published(_spec(), model.__name__) == _properties(model, mode)


def test_the_retrieve_route_validates_and_answers_with_the_clients_models() -> None:
    operation = _spec()["paths"]["/retrieve"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert body.rsplit("/", 1)[1] == request.RetrieveRequest.__name__
    assert answer.rsplit("/", 1)[1] in ("RetrieveResponse", "RetrieveResponse-Output")


def test_the_client_declares_httpx_and_pydantic_only() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert names == {"httpx", "pydantic"}


def test_the_client_installs_alone_and_imports_nothing_of_the_server(tmp_path: Path) -> None:
    """A new virtualenv with only the client: it imports, and none of the server's packages (or
    their heavy dependencies) is there to import."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    installed = subprocess.run(
        [*pip, "install", str(CLIENT)], capture_output=True, text=True, env=environ, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = (
        "import importlib.util, sluice_client, sluice_client.client, sluice_client.request\n"
        "heavy = ['torch', 'prefect', 'fastapi', 'qdrant_client', 'unstructured', 'config',\n"
        "         'index', 'retrieval_api', 'sentence_transformers', 'openvino']\n"
        "print([m for m in heavy if importlib.util.find_spec(m)])"
    )
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, env=environ, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    )
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert "sluice-client" in names and not names & {"torch", "fastapi", "prefect"}, names
    print(f"\nthe client's virtualenv: {sorted(names)}", file=sys.stderr)
