"""What every command shares: settings loading, consoles, tables, expected-error exits,
unexpected-error reports, progress bars."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config.runtime import prepare_process
from config.settings import Settings

PIPED_WIDTH = 200
"""Output that is not a terminal is laid out this wide (or $COLUMNS), and tables fold cells
that still do not fit: a pipe or a log file never loses the end of a value."""


def _width() -> int | None:
    if sys.stdout.isatty():
        return None
    return int(os.environ.get("COLUMNS") or PIPED_WIDTH)


console = Console(stderr=True)
out = Console(width=_width())


class _Flags:
    debug = False
    """`sluice --debug`: tracebacks for every failure, and Prefect's console logs."""


flags = _Flags()


def report_table(title: str, columns: Sequence[str], right: Sequence[str] = ()) -> Table:
    """A table whose cells wrap rather than being cut; `right`: columns aligned right."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in right else "left")
    return table


REPO_DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_settings(
    index: str | None = None, reads_only: bool = False, prefect_console: str = "CRITICAL"
) -> Settings:
    """Validated settings, the process prepared for them. `reads_only`: a command that only
    looks (status) creates no data dir where there is none. `prefect_console`: the least level
    of Prefect's logs shown here; a command prints its own outcome, and each run's full log
    (tracebacks included) is in Prefect."""
    from pydantic import ValidationError

    from config.errors import explain

    try:
        settings = Settings(index_name=index) if index else Settings()
    except ValidationError as error:
        for line in explain(error, Settings.model_fields):
            console.print(f"[red]invalid configuration:[/red] {line}", soft_wrap=True)
        raise typer.Exit(2) from error
    except Exception as error:  # an unreadable config file, a malformed TOML
        console.print(f"[red]invalid configuration:[/red] {error}", soft_wrap=True)
        raise typer.Exit(2) from error
    if reads_only and settings.qdrant_url is None and not settings.data_dir.exists():
        return settings
    from index.models.catalog import resolve_model_path

    local_model = Path(resolve_model_path(settings.embedding_model)).exists()
    console_level = "DEBUG" if flags.debug else prefect_console
    tightened = prepare_process(
        settings.data_dir, hub_offline=local_model, console_level=console_level
    )
    if tightened:
        console.print(
            f"[dim]note: {tightened} file(s) and folder(s) of the data dir {settings.data_dir} "
            "were readable by other users; they are now its owner's only (0700/0600)[/dim]",
            soft_wrap=True,
        )
    return settings


def use_prefect(settings: Settings) -> None:
    """Before a command's first flow run: without PREFECT_API_URL, the data dir's own
    Prefect server (started on first use) records it, and a no-op run costs no server start."""
    if os.environ.get("PREFECT_API_URL") or settings.prefect_server_idle_minutes == 0:
        return
    if "prefect" in sys.modules:  # its settings are read once, on import
        raise RuntimeError("use_prefect must run before Prefect is imported")
    from composition.prefect_runs import running_server
    from flows.local_server import ensure_local_server, register_client

    home = prefect_home(settings)
    register_client(home)  # before the server may start: it stays up while this command runs
    url = running_server(home)
    if url is None:
        console.print(
            "[dim]starting this data dir's Prefect server (first use: ~20 s)…[/dim]", soft_wrap=True
        )
        url = ensure_local_server(home, settings.prefect_server_idle_minutes * 60)
        console.print(
            f"[dim]runs are recorded in Prefect at {url.removesuffix('/api')} (`sluice server "
            "status` shows it)[/dim]",
            soft_wrap=True,
        )
    os.environ["PREFECT_API_URL"] = url


def prefect_home(settings: Settings) -> Path:
    from composition.prefect_runs import prefect_home as home

    return home(settings)


def prefect_api(settings: Settings) -> str | None:
    """Where runs are recorded: PREFECT_API_URL's server, or the data dir's own while it runs."""
    from composition.prefect_runs import prefect_api_url

    return prefect_api_url(prefect_home(settings))


def prefect_hint(api: str, example: str = "prefect flow-run ls") -> str:
    """The UI and API address, and how Prefect's own commands (and the hints Prefect prints,
    such as `prefect deployment run ...`) reach this server rather than a temporary one."""
    return (
        f"Prefect UI {api.removesuffix('/api')} (API {api}); Prefect's own commands need the "
        f"address: PREFECT_API_URL={api} {example}"
    )


IndexOption = Annotated[
    str | None, typer.Option("--index", help="Index name (default SLUICE_INDEX_NAME).")
]


def index_errors() -> tuple[type[Exception], ...]:
    """Failures of a command on an index that a user acts on: it is busy, held, or missing, its
    ingest needs what this machine lacks (OCR), or its state database is unreachable or at a
    schema this Sluice will not use."""
    from sqlalchemy.exc import OperationalError

    from index.contracts import IndexLockedError, IndexNotFoundError
    from ingest.ocr import OcrUnavailable
    from state.run_lock import IngestAlreadyRunning
    from state.schema import StateSchemaError

    return (
        IndexLockedError,
        IndexNotFoundError,
        IngestAlreadyRunning,
        OcrUnavailable,
        StateSchemaError,
        OperationalError,
    )


@contextmanager
def exit_on(what: str, *errors: type[BaseException]) -> Iterator[None]:
    """Expected failures print one line and exit with code 2, never a traceback."""
    try:
        yield
    except errors as error:
        # A KeyError's str() is its repr, quotes and all; its message is its first argument.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if flags.debug:
            console.print_exception()
        one_line = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
        console.print(f"[red]{what} failed:[/red] {escape(one_line)}", soft_wrap=True)
        raise typer.Exit(2) from error


EXIT_UNEXPECTED = 1


def report_unexpected(error: BaseException) -> int:
    """A failure no command expected: one line saying what and where its full traceback went
    (the data dir's `logs/`), and exit code 1. `--debug` prints the traceback here too. A full
    disk is no bug: it says so, and exits 2 like other expected failures; nor is a state
    database that is unreachable or at a schema this Sluice will not use, whichever command
    met it."""
    import errno
    import tempfile
    import time
    import traceback

    from sqlalchemy.exc import DBAPIError, OperationalError

    from state.schema import StateSchemaError

    text = "".join(traceback.format_exception(error))
    if flags.debug:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    if isinstance(error, StateSchemaError | OperationalError):
        first = str(error.orig if isinstance(error, OperationalError) else error).splitlines()
        console.print(f"[red]failed:[/red] {escape(first[0] if first else '')}", soft_wrap=True)
        return 2
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        console.print(
            f"[red]failed: the disk is full[/red]{escape(where)}. Free some space and run the "
            "command again: a run stopped part-way resumes without duplicates or losses.",
            soft_wrap=True,
        )
        return 2
    try:
        folder = Settings().data_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
    except Exception:  # no usable configuration or data dir: the error must still be kept
        folder = Path(tempfile.gettempdir())
    path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path.write_text(text)
    # A database driver's error as the driver said it, not SQLAlchemy's wrapping of it.
    shown = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    console.print(
        f"[red]unexpected error:[/red] {escape(type(shown).__name__)}: {escape(str(shown))}"
        f" (full traceback in {path}; rerun with --debug to print it; please report it)",
        soft_wrap=True,
    )
    return EXIT_UNEXPECTED


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Draws a bar per pipeline stage while a flow reports progress in this process."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from pipelines.progress import set_progress_listener

    columns = (
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # Bars only where someone watches: piped or logged, they would leave blank lines.
    shown = show and console.is_terminal
    with Progress(*columns, console=console, disable=not shown, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def listener(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        set_progress_listener(listener)
        try:
            yield
        finally:
            set_progress_listener(None)
