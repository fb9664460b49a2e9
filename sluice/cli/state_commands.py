"""`sluice state status|upgrade`: the state database's schema revision, and its upgrade."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sluice.cli.common import IndexOption, exit_on, index_errors, load_settings, out, report_table
from state.database import StateDatabase

app = typer.Typer(
    help="The state (manifests, run history, locks, rate limits): schema revision and upgrade.",
    no_args_is_help=True,
)


def _databases(index: str | None) -> list[StateDatabase]:
    from composition.components import Components

    parts = Components(load_settings())
    return [parts.state("index", index), parts.state("shared")]


@app.command()
def status(
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Where the state is and whether its schema is the one this Sluice needs."""
    from state.schema import status as schema_status

    with exit_on("state status", *index_errors()):
        rows = [
            {
                "tree": found.tree,
                "where": found.where,
                "revision": found.current,
                "needs": found.head,
                "up_to_date": found.up_to_date,
            }
            for found in map(schema_status, _databases(index))
        ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = report_table("State schema", list(rows[0]))
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    out.print(table)


@app.command()
def upgrade(index: IndexOption = None) -> None:
    """Apply every schema migration this Sluice knows; run it once every process that uses
    the state runs this version."""
    from state.schema import upgrade as upgrade_schema

    with exit_on("state upgrade", *index_errors()):
        for db in _databases(index):
            done = upgrade_schema(db)
            out.print(f"{done.tree}: {done.where} at revision {done.current}")
