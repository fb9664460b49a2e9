"""`sluice cost`: what each index's ingest runs and retrievals cost over a period, and what its
storage costs a month."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from config.settings import Settings
from sluice.cli.common import console, load_settings, out, report_table

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """`7d`, `24h`, `30m`, `2w` before now, or an ISO date or time (UTC unless it says)."""
    now = time.time() if now is None else now
    if match := _RELATIVE.match(value.strip()):
        return now - int(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise typer.BadParameter(
            f"'{value}' is neither a span (7d, 24h, 30m, 2w) nor a date (2026-11-01)"
        ) from error
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _indexes(settings: Settings, index: str | None) -> list[str]:
    """The named index, else every index with a run history or a serving alias."""
    if index:
        return [index]
    folder = settings.data_dir / "manifests"
    return sorted(p.stem for p in folder.glob("*.sqlite")) if folder.is_dir() else []


def _ingest_costs(settings: Settings, index: str, since: float) -> dict[str, dict[str, Any]]:
    """Per source: runs started since `since` and the sum of their reports' costs (the rates
    of the day each ran)."""
    from composition.components import Components

    if not Components(settings).has_manifest(index):
        return {}
    from pipelines.cost import Cost, total_cost

    manifest = Components(settings).manifest(index)
    try:
        runs = [r for r in manifest.runs(limit=10_000_000) if r.started_at >= since]
    finally:
        manifest.close()
    by_source: dict[str, list[Cost]] = {}
    for run in runs:
        report = run.report or {}
        cost = Cost.from_dict(report.get("cost"))
        cost.chunks = cost.chunks or int(report.get("chunks") or 0)  # a run from before costs
        by_source.setdefault(run.source, []).append(cost)
    return {
        source: {"runs": len(costs), **total_cost(costs).to_dict()}
        for source, costs in sorted(by_source.items())
    }


def _storage(settings: Settings, indexes: list[str]) -> dict[str, dict[str, Any]]:
    if settings.qdrant_url is None and not settings.qdrant_path.exists():
        return {}
    from composition.components import Components

    parts = Components(settings)
    store = parts.store()
    try:
        aliases = store.list_aliases()
        return {
            alias: parts.storage(store, alias).to_dict()
            for alias in indexes or sorted(aliases)
            if alias in aliases
        }
    finally:
        store.close()


def retrieval_costs(folder: Path, since: float) -> dict[str, dict[str, float]]:
    """Per index: `/retrieve` requests in the query log since `since`, their summed cost
    estimate and CPU seconds. No log is no requests; an unreadable file is skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from index.query_log import log_files

    columns = ["index", "time", "cost_estimate", "cpu_ms"]
    tables = []
    for path in log_files(folder) if folder.is_dir() else []:
        try:
            tables.append(pq.read_table(path, columns=columns))
        except (OSError, pa.ArrowInvalid):  # a file of another version or a broken one
            continue
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    start = pa.scalar(datetime.fromtimestamp(since, UTC), pa.timestamp("ms", tz="UTC"))
    table = table.filter(pc.greater_equal(table["time"], start))
    grouped = table.group_by("index").aggregate(
        [("time", "count"), ("cost_estimate", "sum"), ("cpu_ms", "sum")]
    )
    return {
        str(row["index"]): {
            "requests": int(row["time_count"]),
            "estimated_cost": float(row["cost_estimate_sum"] or 0.0),
            "cpu_seconds": float(row["cpu_ms_sum"] or 0.0) / 1000,
        }
        for row in grouped.to_pylist()
    }


def cost_summary(settings: Settings, index: str | None, since: float) -> dict[str, Any]:
    from composition.components import Components

    rates = Components(settings).cost_rates()
    names = _indexes(settings, index)
    storage = _storage(settings, [index] if index else [])
    retrieval = retrieval_costs(settings.query_log_dir, since)
    summary: dict[str, dict[str, Any]] = {}
    for name in [index] if index else sorted({*names, *storage, *retrieval}):
        sources = _ingest_costs(settings, name, since)
        ingest = {
            key: sum(s[key] for s in sources.values())
            for key in ("runs", "chunks", "tokens_embedded", "cpu_seconds", "gpu_seconds")
        }
        ingest["estimated_cost"] = sum(s["estimated_cost"] for s in sources.values())
        served = retrieval.get(name, {"requests": 0, "estimated_cost": 0.0, "cpu_seconds": 0.0})
        summary[name] = {
            "sources": sources,
            "ingest": ingest,
            "retrieval": served,
            "storage": storage.get(name),
            "estimated_cost": ingest["estimated_cost"] + served["estimated_cost"],
        }
    return {
        "since": datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"),
        "until": datetime.now(UTC).isoformat(timespec="seconds"),
        "rates": {
            "cpu_hour": rates.cpu_hour,
            "gpu_hour": rates.gpu_hour,
            "storage_gb_month": rates.storage_gb_month,
        },
        "currency": rates.currency,
        "indexes": summary,
        "estimated_cost": sum(i["estimated_cost"] for i in summary.values()),
    }


def cost(
    index: Annotated[
        str | None, typer.Option("--index", help="Only this index (default: every index).")
    ] = None,
    since: Annotated[
        str, typer.Option(help="The period: 7d, 24h, 30m, 2w back, or from a date (2026-11-01).")
    ] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """What each index cost over a period: per source its ingest runs, chunks, tokens embedded,
    CPU and GPU seconds and estimated compute cost; retrieval requests and their cost from the
    query log; and the index's storage and what it costs a month. Estimates from the
    SLUICE_COST_* rates (docs/observability.md, "Cost")."""
    start = parse_since(since)
    settings = load_settings(reads_only=True)
    summary = cost_summary(settings, index, start) if settings.data_dir.exists() else {}
    if as_json:
        since_iso = datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds")
        empty = {"since": since_iso, "indexes": {}, "estimated_cost": 0.0}
        out.print_json(json.dumps(summary or empty))
        return
    if not summary or not summary["indexes"]:
        console.print(f"no index yet in {settings.data_dir}")
        return
    currency = summary["currency"]
    columns = ("index", "source", "runs", "chunks", "tokens", "CPU s", "GPU s", "cost")
    numbers = columns[2:]
    table = report_table(f"Cost since {summary['since']} ({currency})", columns, right=numbers)
    for name, info in summary["indexes"].items():
        for source, row in info["sources"].items():
            table.add_row(name, source, *_cells(row))
        table.add_row(name, "[bold]ingest total[/bold]", *_cells(info["ingest"]))
        served = info["retrieval"]
        table.add_row(
            name,
            "retrieval (query log)",
            f"{served['requests']} requests",
            "",
            "",
            f"{served['cpu_seconds']:.1f}",
            "",
            f"{served['estimated_cost']:.4f}",
        )
    out.print(table)
    storage = report_table(
        "Storage", ("index", "bytes", "versions", "measured", "a month"), right=("bytes", "a month")
    )
    for name, info in summary["indexes"].items():
        if info["storage"]:
            s = info["storage"]
            method = "on disk" if s["method"] == "disk" else "from points"
            storage.add_row(
                name, str(s["bytes"]), str(s["versions"]), method, f"{s['monthly_cost']:.6f}"
            )
    out.print(storage)
    out.print(f"estimated compute cost over the period: {summary['estimated_cost']:.4f} {currency}")


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(row["runs"]),
        str(row["chunks"]),
        str(row["tokens_embedded"]),
        f"{row['cpu_seconds']:.1f}",
        f"{row['gpu_seconds']:.1f}",
        f"{row['estimated_cost']:.4f}",
    )
