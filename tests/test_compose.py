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
