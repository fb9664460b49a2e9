"""The layout's own rules, beside the import contracts `lint-imports` checks: small modules."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def test_no_source_module_is_over_400_lines() -> None:
    """Past that a module holds more than one subject; split it by job (docs/architecture.md).
    Tests and benchmarks are not held to it."""
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sources = [name for name in tracked if not name.startswith(("tests/", "bench/"))]
    assert len(sources) > 100
    long = {
        name: lines
        for name in sources
        if (lines := len((ROOT / name).read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
