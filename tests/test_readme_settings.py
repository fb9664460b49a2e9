"""The README's settings table says what `sluice config check` says: every setting is in it,
with the default the settings model has (a default written as prose, such as "model limit", is
explained rather than compared)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (`SLUICE_[A-Z0-9_]+`(?:, `SLUICE_[A-Z0-9_]+`)*) \| ([^|]+) \|")


def _table() -> dict[str, str]:
    """Setting name (lower case, as config check names it) -> the README's default cell."""
    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        found = ROW.match(line)
        if not found:
            continue
        names = re.findall(r"`SLUICE_([A-Z0-9_]+)`", found[1])
        cell = found[2].strip()
        values = re.findall(r"`([^`]*)`", cell)
        if len(values) != len(names):  # prose, or one value for several: nothing to compare
            values = [cell] * len(names)
        for name, value in zip(names, values, strict=True):
            rows[name.lower()] = value
    return rows


def _checked() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "config", "check", "--json"],
        env=env,
        cwd=ROOT / "tests",  # no sluice.toml of anyone's here
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    checked: dict[str, Any] = json.loads(done.stdout)
    return checked


def _same(readme: str, value: Any) -> bool:
    if readme == "unset":
        return value is None
    try:
        return bool(json.loads(readme) == value)
    except ValueError:
        return readme == str(value)


def test_the_readme_table_has_every_setting_with_its_default() -> None:
    table, checked = _table(), _checked()
    assert sorted(set(checked) - set(table) - {"sources"}) == []
    assert sorted(set(table) - set(checked)) == []
    compared = 0
    for name, shown in table.items():
        value = checked[name]["value"]
        if " " in shown and shown != "unset":
            continue  # prose: "model limit", "one per CPU core, at least 2"
        assert _same(shown, value), f"README says {name} = {shown!r}, config check {value!r}"
        compared += 1
    assert compared >= 60, compared
