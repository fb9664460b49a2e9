"""The `sluice` command: ingest, retry-failed, deploy, serve, query, demo, status, runs, reembed,
versions, rollback, cost, eval, tune, golden, train-reranker, train-embedder, adapt, models, keys,
log, config check, server, state."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sluice.cli import (
    config_commands,
    cost_commands,
    eval_commands,
    feedback_commands,
    index_commands,
    ingest_commands,
    key_commands,
    log_commands,
    model_commands,
    run_commands,
    serve_commands,
    server_commands,
    state_commands,
    training_commands,
)
from sluice.cli.common import flags, report_unexpected


def _plain_flags() -> None:
    """Typer 0.29 labels every on/off flag `<bool>` in help (`--dry-run <bool>`), as if it
    took a value; a flag takes none, so its type column stays empty."""
    from typer.core import TyperOption

    labelled = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else labelled(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign,assignment]


_plain_flags()

app = typer.Typer(
    help="Sluice: RAG ingestion and hybrid retrieval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # `main` reports an unexpected error in one line
)


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Print tracebacks and Prefect's logs here.")
    ] = False,
) -> None:
    flags.debug = debug


app.command()(ingest_commands.ingest)
app.command(name="retry-failed")(ingest_commands.retry_failed)
app.command()(ingest_commands.deploy)
app.command()(serve_commands.serve)
app.command()(serve_commands.query)
app.command()(index_commands.status)
app.command()(run_commands.runs)
app.command()(cost_commands.cost)
app.command()(index_commands.reembed)
app.command()(index_commands.versions)
app.command()(index_commands.rollback)
app.command(name="eval")(eval_commands.evaluate)
app.command()(eval_commands.tune)
app.command(name="train-reranker")(training_commands.train_reranker)
app.command(name="train-embedder")(training_commands.train_embedder)
app.command()(feedback_commands.golden)
app.command()(training_commands.adapt)
app.command()(serve_commands.demo)
app.command()(model_commands.models)
app.add_typer(config_commands.app, name="config")
app.add_typer(key_commands.app, name="keys")
app.add_typer(log_commands.app, name="log")
app.add_typer(server_commands.app, name="server")
app.add_typer(state_commands.app, name="state")


def main() -> None:
    """The `sluice` executable: an error no command expected is one line and exit code 1."""
    try:
        app()
    except Exception as error:
        sys.exit(report_unexpected(error))
