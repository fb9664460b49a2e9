"""`sluice ingest PATH --watch` (or `--source NAME --watch`): a local folder kept live in the
foreground, beside `sluice serve` on the same data dir, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import typer

from config.settings import Settings
from config.sources import LocalFolderConfig, PostgresConfig, S3Config, SourceConfig
from sluice.cli.common import console, exit_on, index_errors, out

if TYPE_CHECKING:
    from composition.live_source import KeptSources


def watch(
    settings: Settings, path: Path | None, source: str | None, tenant: str | None, as_json: bool
) -> None:
    from composition.components import Components
    from composition.live_source import watch_source

    parts = Components(settings)
    config = settings.source(source) if source else parts.folder_source(Path(str(path)), tenant)
    if not _watchable(config):
        console.print(
            f"[red]--watch:[/red] source '{config.name}' is not a local folder, an S3 source "
            "with a queue_url or a postgres source with a notify_channel",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    where = config.path if isinstance(config, LocalFolderConfig) else f"source '{config.name}'"
    console.print(
        f"watching {where} into '{settings.index_name}' (Ctrl-C or SIGTERM stops)", soft_wrap=True
    )
    with exit_on("ingest --watch", *index_errors()):
        runs = watch_source(parts, config, stop, lambda report: _print(report.to_dict(), as_json))
    console.print(f"stopped after {runs} sync(s)")


def start_live_sources(settings: Settings, kept: KeptSources, stop: threading.Event) -> None:
    """A watcher thread for each `live = true` source, beside `sluice deploy`'s schedules, on
    the source as `kept` keeps it open; they stop when `stop` is set."""
    from composition.components import Components
    from composition.live_source import watch_source

    for config in [s for s in settings.sources if _watchable(s) and s.live]:

        def run(config: LocalFolderConfig | S3Config | PostgresConfig = config) -> None:
            watch_source(
                Components(settings),
                config,
                stop,
                lambda r: _print(r.to_dict(), False),
                kept=kept.get(config.name),
            )

        threading.Thread(target=run, name=f"live-{config.name}", daemon=True).start()
        out.print(f"live: watching source '{config.name}'", soft_wrap=True)


def _watchable(config: SourceConfig) -> TypeGuard[LocalFolderConfig | S3Config | PostgresConfig]:
    return (
        isinstance(config, LocalFolderConfig)
        or (isinstance(config, S3Config) and config.queue_url is not None)
        or (isinstance(config, PostgresConfig) and config.notify_channel is not None)
    )


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:  # one line per run, for a program to follow
        report.pop("documents")
        print(json.dumps({**report, "finished_at": time.time()}), flush=True)
        return
    counts = " ".join(f"{k} {report[k]}" for k in ("new", "changed", "deleted", "failed"))
    kind = f"lag {report['lag_s']:.2f} s" if report["lag_s"] is not None else "reconciled"
    held = f"; deletions held: {report['deletions_held']}" if report["deletions_held"] else ""
    out.print(
        f"{time.strftime('%H:%M:%S')} {report['source'].rsplit('/', 1)[-1]}: {counts}; "
        f"{report['points_in_index']} points; {kind}{held}",
        soft_wrap=True,
    )
