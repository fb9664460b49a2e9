"""`sluice config check`: the resolved settings, and where each value came from."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from sluice.cli.common import load_settings, out, report_table

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


def origins(field_names: list[str]) -> dict[str, str]:
    """Per setting: `environment`, `file` or `default`, in the order `Settings` applies them."""
    config_file = os.environ.get("SLUICE_CONFIG_FILE")
    in_file: dict[str, Any] = {}
    if config_file:
        in_file = tomllib.loads(Path(config_file).read_text())
    found = {}
    for name in field_names:
        if f"SLUICE_{name.upper()}" in {key.upper() for key in os.environ}:
            found[name] = "environment"
        elif name in in_file:
            found[name] = f"file ({config_file})"
        else:
            found[name] = "default"
    return found


@app.command()
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Load and validate the configuration as every command does (exit 2 if it is invalid),
    then print each setting's value and where it came from."""
    settings = load_settings()
    values = json.loads(settings.model_dump_json())  # secrets come out masked
    where = origins(list(values))
    if as_json:
        rows = {name: {"value": values[name], "from": where[name]} for name in values}
        out.print_json(json.dumps(rows))
        return
    table = report_table("Sluice configuration (valid)", ("setting", "value", "from"))
    for name, value in values.items():
        table.add_row(name, json.dumps(value), where[name])
    out.print(table)
