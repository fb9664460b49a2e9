"""`sluice runs`: the ingest run history of an index, from its manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from config.settings import Settings
from sluice.cli.common import (
    IndexOption,
    console,
    load_settings,
    out,
    prefect_api,
    prefect_hint,
    report_table,
)

COUNTS = ("new", "changed", "unchanged", "deleted", "failed")


def run_history(
    settings: Settings, index: str, limit: int, source: str | None = None
) -> list[dict[str, Any]]:
    """Newest first; empty where the index has no manifest yet (nothing is created)."""
    from composition.components import Components

    if not Components(settings).has_manifest(index):
        return []

    manifest = Components(settings).manifest(index)
    try:
        records = manifest.runs(limit=limit, source=source)
    finally:
        manifest.close()
    return [
        {
            "run_id": run.run_id,
            "source": run.source,
            "tenant": (run.report or {}).get("tenant"),
            "state": run.state,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "seconds": round(run.finished_at - run.started_at, 1) if run.finished_at else None,
            **{key: (run.report or {}).get(key) for key in COUNTS},  # None: no report yet
            "cost": (run.report or {}).get("cost"),  # None: no report, or one from before costs
            "error": run.error or _held((run.report or {}).get("deletions_held")),
            "flow_run_id": run.external_id,
            "live": bool((run.report or {}).get("live")),
            "lag_s": (run.report or {}).get("lag_s"),  # a live batch's, change seen to searchable
        }
        for run in records
    ]


def _held(reason: str | None) -> str:
    """A run that held its deletions ended without an error; the reason, and the way on, is
    what its row must say."""
    return f"deletions held: {reason}" if reason else ""


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


STATE_STYLE = {
    "completed": "green",
    "running": "cyan",
    "completed_with_failures": "yellow",
    "deletions_held": "yellow",
    "failed": "red",
    "interrupted": "red",
}


def runs_table(title: str, rows: list[dict[str, Any]]) -> Table:
    costs = ("tokens", "CPU s", "cost")
    columns = ("run", "source", "state", "started (UTC)", "seconds", *COUNTS, *costs, "error")
    table = report_table(title, columns, right=("run", "seconds", *COUNTS, *costs))
    for row in rows:
        style = STATE_STYLE.get(row["state"], "")
        table.add_row(
            str(row["run_id"]),
            row["source"] + (f" (live, lag {row['lag_s']:.1f} s)" if row.get("lag_s") else ""),
            f"[{style}]{row['state']}[/{style}]",
            (row["started_at"] or "").replace("T", " ").removesuffix("+00:00"),
            "" if row["seconds"] is None else f"{row['seconds']:.1f}",
            *("" if row[key] is None else str(row[key]) for key in COUNTS),
            *_cost_cells(row.get("cost")),
            row["error"],
        )
    return table


def _cost_cells(cost: dict[str, Any] | None) -> tuple[str, str, str]:
    if not cost:
        return "", "", ""
    return (
        str(cost.get("tokens_embedded", 0)),
        f"{cost.get('cpu_seconds', 0.0):.1f}",
        f"{cost.get('estimated_cost', 0.0):.4f} {cost.get('currency', '')}".strip(),
    )


def runs(
    index: IndexOption = None,
    source: Annotated[str | None, typer.Option(help="Only this source's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Ingest runs into the index, newest first: id, source, state, times, counts, error.

    Dry runs write nothing and are not listed; `flow_run_id` (in --json) finds a run's logs in
    Prefect."""
    settings = load_settings(index, reads_only=True)
    rows = run_history(settings, settings.index_name, limit, source)
    prefect = prefect_api(settings)
    if as_json:
        body = {"index": settings.index_name, "runs": rows, "prefect_api": prefect}
        out.print_json(json.dumps(body))
        return
    if not rows:
        console.print(f"no ingest runs into '{settings.index_name}' yet")
        return
    out.print(runs_table(f"Ingest runs into '{settings.index_name}'", rows))
    if prefect:  # each run's logs: `flow_run_id` in --json
        out.print(prefect_hint(prefect, "prefect flow-run logs FLOW_RUN_ID"), soft_wrap=True)
