"""`sluice ingest`, `retry-failed` and `deploy`: bringing an index up to date with its sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from config.settings import Settings
from sluice.cli.common import (
    console,
    exit_on,
    index_errors,
    load_settings,
    out,
    prefect_api,
    prefect_hint,
    progress_bars,
    report_table,
    use_prefect,
)
from sluice_client.request import TENANT_PATTERN


def run_ingest(
    settings: Settings,
    source: str | None,
    path: Path | None,
    dry_run: bool,
    show_progress: bool,
    tenant: str | None = None,
) -> dict[str, Any]:
    use_prefect(settings)
    from flows.ingest_flow import ingest_flow

    with progress_bars(show_progress):
        report: dict[str, Any] = ingest_flow(
            source=source,
            path=str(path) if path else None,
            dry_run=dry_run,
            settings=settings,
            tenant=tenant,
        )
    return report


def print_report(report: dict[str, Any]) -> None:
    title = "Plan (dry run, nothing written)" if report["dry_run"] else "Ingest"
    columns = ("new", "changed", "unchanged", "deleted", "failed", "chunks", "embedded")
    shown = (*columns, "from cache", "points", "seconds")
    table = report_table(f"{title}: {report['source']} into '{report['index']}'", shown, shown)
    table.add_row(
        *(str(report[c]) for c in columns),
        str(report["from_cache"]),
        str(report["points_in_index"]),
        f"{report['seconds']:.1f}",
    )
    out.print(table)
    if "cost" in report:
        from pipelines.cost import Cost

        out.print(f"cost: {Cost.from_dict(report['cost']).describe()}")
    if report["deletions_held"]:
        out.print(f"[yellow]deletions held:[/yellow] {report['deletions_held']}")
    documents = report["documents"]
    rows = [(d["uri"], "new", d["reason"]) for d in documents["new"]]
    rows += [(d["uri"], "changed", d["reason"]) for d in documents["changed"]]
    rows += [(uri, "deleted", "gone from the source") for uri in documents["deleted"]]
    rows += [(d["uri"], "failed", d["reason"]) for d in documents["failed"]]
    rows += [
        (uri, "quarantined", "skipped; sluice retry-failed") for uri in documents["quarantined"]
    ]
    rows += [(d["uri"], "skipped", d["reason"]) for d in documents.get("skipped", [])]
    if rows:
        details = report_table("Documents", ("document", "outcome", "reason"))
        for row in rows[:200]:
            details.add_row(*row)
        out.print(details)
        if len(rows) > 200:
            out.print(f"… and {len(rows) - 200} more (--json lists them all)")


def _ingest_runs(
    settings: Settings,
    path: Path | None,
    source: str | None,
    dry_run: bool,
    as_json: bool,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """One run per source: PATH, --source, or every configured source; their reports.
    `tenant`: PATH's (a configured source names its own)."""
    from index.models.catalog import ModelUnavailable
    from ingest.types import SourceUnavailable

    if path is not None:
        runs: list[tuple[str | None, Path | None]] = [(None, path)]
    elif source is not None:
        with exit_on("ingest", KeyError):
            settings.source(source)  # an unknown name fails here, before a flow run starts
        runs = [(source, None)]
    else:
        runs = [(s.name, None) for s in settings.sources]
    if not runs:
        console.print("[red]nothing to ingest:[/red] give a PATH, or configure [\\[sources]]")
        raise typer.Exit(2)
    reports = []
    for name, folder in runs:
        errors = (*index_errors(), SourceUnavailable, ModelUnavailable, KeyError, ValueError)
        with exit_on("ingest", *errors):
            reports.append(run_ingest(settings, name, folder, dry_run, not as_json, tenant))
    if as_json:
        out.print_json(json.dumps(reports[0] if len(reports) == 1 else reports))
    else:
        for report in reports:
            print_report(report)
    return reports


EXIT_FAILED_DOCUMENTS = 4
EXIT_DELETIONS_HELD = 5


def exit_code(reports: list[dict[str, Any]]) -> int:
    """0, or what an alert should know: deletions held (5) outranks failed documents (4)."""
    if any(r["deletions_held"] for r in reports):
        return EXIT_DELETIONS_HELD
    if any(r["failed"] for r in reports):
        return EXIT_FAILED_DOCUMENTS
    return 0


def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="Folder or file; omit to run configured sources.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="A configured source, by name.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Glob to include (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Glob to exclude (repeatable).")] = None,
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Whose documents PATH holds (default: the default tenant)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Then keep PATH (or a local --source) live: sync each change as the OS reports "
            "it, until Ctrl-C or SIGTERM.",
        ),
    ] = False,
) -> None:
    """Bring the index up to date with PATH, one --source, or every configured source.

    Only what changed is read, parsed and embedded; documents gone from a source are deleted.
    """
    settings = load_settings(index)
    if include or exclude:
        settings = settings.model_copy(
            update={"include": include or settings.include, "exclude": exclude or settings.exclude}
        )
    if path is not None and not path.exists():
        console.print(f"[red]{path} does not exist[/red]")
        raise typer.Exit(2)
    if tenant is not None and (path is None or not re.match(TENANT_PATTERN, tenant)):
        problem = "names a tenant for PATH only" if path is None else "letters, digits, _ . -"
        console.print(f"[red]--tenant {tenant!r}:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(2)
    if watch:
        if dry_run or (path is None) == (source is None):
            console.print("[red]--watch[/red] takes PATH or one --source, and no --dry-run")
            raise typer.Exit(2)
        from sluice.cli.watch_commands import watch as watch_live

        watch_live(settings, path, source, tenant, as_json)
        return
    runs = _ingest_runs(settings, path, source, dry_run, as_json, tenant)
    raise typer.Exit(exit_code(runs))


def retry_failed(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Give quarantined documents a fresh set of attempts, then run their sources again."""
    settings = load_settings(index)
    from composition.components import Components

    manifest = Components(settings).manifest()
    try:
        by_source = {
            r.source
            for r in manifest.all_documents()
            if r.status != "indexed" and source in (None, r.source)
        }
        released = manifest.release_quarantine(source)
    finally:
        manifest.close()
    console.print(f"released {len(released)} document(s) from quarantine")
    configured = {s.name for s in settings.sources}
    reports = []
    for name in sorted(by_source):
        if name in configured:
            reports += _ingest_runs(settings, None, name, False, as_json)
        elif name.startswith("file://"):
            from urllib.parse import unquote, urlparse

            folder = Path(unquote(urlparse(name).path))
            tenant = _last_tenant(settings, name)  # an ad-hoc folder keeps the tenant it had
            reports += _ingest_runs(settings, folder, None, False, as_json, tenant)
    raise typer.Exit(exit_code(reports))


def _last_tenant(settings: Settings, source: str) -> str | None:
    from sluice.cli.run_commands import run_history

    for run in run_history(settings, settings.index_name, limit=50, source=source):
        if run["tenant"]:
            return str(run["tenant"])
    return None


def deploy(
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    work_pool: Annotated[
        str | None,
        typer.Option(
            help="Register the deployments on this Prefect work pool (a process pool is made "
            "if there is none) and exit: `prefect worker start --pool NAME` on any machine "
            "that reaches the Prefect server and the index runs them.",
        ),
    ] = None,
) -> None:
    """Serve every configured source as a Prefect deployment on its cron schedule.

    Runs against the Prefect API in PREFECT_API_URL, or else the data dir's own Prefect
    server (its UI shows the runs); keeps running, starting each scheduled run, until
    interrupted. With --work-pool, workers run them instead (docs/scaling.md).
    """
    settings = load_settings(index, prefect_console="INFO")
    if not settings.sources:
        console.print("[red]no sources configured:[/red] add [\\[sources]] to the config file")
        raise typer.Exit(2)
    use_prefect(settings)
    from prefect import serve

    from flows.deployments import source_deployments

    table = report_table(
        f"Deployments for index '{settings.index_name}'", ("deployment", "type", "schedule")
    )
    for source in settings.sources:
        table.add_row(f"ingest/{source.name}", source.type, source.schedule or "manual only")
    out.print(table)
    api = prefect_api(settings)
    if work_pool:
        from flows.deployments import register_on_work_pool

        register_on_work_pool(settings, work_pool)
        worker = f"prefect worker start --pool {work_pool}"
        out.print(
            f"registered on work pool '{work_pool}'; start a worker where Sluice is installed "
            f"(it needs the index and, for secrets, its own SLUICE_* settings):",
            soft_wrap=True,
        )
        out.print(prefect_hint(api, worker) if api else worker, soft_wrap=True)
        return
    if api:  # Prefect's hints below (`prefect deployment run ...`) need the address
        first = f"prefect deployment run 'ingest/{settings.sources[0].name}'"
        out.print(prefect_hint(api, first), soft_wrap=True)
    import threading

    from composition.live_source import KeptSources
    from flows.webhook_runs import run_webhook_syncs
    from sluice.cli.watch_commands import start_live_sources

    kept, stop = KeptSources(settings), threading.Event()
    start_live_sources(settings, kept, stop)
    webhook = threading.Thread(
        target=run_webhook_syncs, args=(settings, kept, stop), name="webhook-runs", daemon=True
    )
    webhook.start()
    try:
        # only runs already due: the webhook's are run warm above before they are
        serve(*source_deployments(settings), prefetch_seconds=0)
    finally:
        stop.set()
        webhook.join(timeout=60)
        kept.close()
