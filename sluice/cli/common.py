"""What every command shares: settings loading, consoles, expected-error exits, progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from config.runtime import prepare_process
from config.settings import Settings

console = Console(stderr=True)
out = Console()

REPO_DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_settings(index: str | None = None, reads_only: bool = False) -> Settings:
    """Validated settings, the process prepared for them. `reads_only`: a command that only
    looks (status) creates no data dir where there is none."""
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
    from index.embedder import resolve_model_path

    local_model = Path(resolve_model_path(settings.embedding_model)).exists()
    prepare_process(settings.data_dir, hub_offline=local_model)
    return settings


IndexOption = Annotated[
    str | None, typer.Option("--index", help="Index name (default SLUICE_INDEX_NAME).")
]


def index_errors() -> tuple[type[Exception], ...]:
    """Failures of a command on an index that a user acts on: it is busy, held, or missing."""
    from index.types import IndexLockedError, IndexNotFoundError
    from ingest.manifest import IngestAlreadyRunning

    return (IndexLockedError, IndexNotFoundError, IngestAlreadyRunning)


@contextmanager
def exit_on(what: str, *errors: type[BaseException]) -> Iterator[None]:
    """Expected failures print one line and exit with code 2, never a traceback."""
    try:
        yield
    except errors as error:
        # A KeyError's str() is its repr, quotes and all; its message is its first argument.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        console.print(f"[red]{what} failed:[/red] {escape(str(message))}", soft_wrap=True)
        raise typer.Exit(2) from error


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
    with Progress(*columns, console=console, disable=not show) as progress:
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
