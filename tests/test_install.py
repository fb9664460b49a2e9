"""What the install script leaves in `.venv`, as the README shows it: the optional extras the
README names install through `scripts/install.sh EXTRA` and import, torch stays the pinned CPU
build, and OpenVINO's telemetry package (it sends usage events) is not there."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {
    "langchain": "sluice_client.langchain",
    "llamaindex": "sluice_client.llamaindex",
    "tracing": "opentelemetry.sdk.trace",
}


def _readme_extras() -> set[str]:
    """Every extra a README or doc line installs, in the form it shows."""
    text = "".join(p.read_text() for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")])
    assert "pip install 'sluice-rag[" not in text, "the package is not on an index: use the script"
    found = re.findall(r"bash scripts/install\.sh\s+([a-z,]+)", text)
    return {extra for group in found for extra in group.split(",")}


def test_the_docs_name_extras_that_exist() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    named = _readme_extras()
    assert {"langchain", "llamaindex", "tracing"} <= named
    assert named <= set(declared), named - set(declared)


@pytest.mark.parametrize("extra", sorted(IMPORTS))
def test_an_extra_the_tests_installed_imports(extra: str) -> None:
    importlib.import_module(IMPORTS[extra])


def test_no_telemetry_and_the_pinned_torch() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("openvino-telemetry")
    assert importlib.metadata.version("torch").startswith("2.13.0")
