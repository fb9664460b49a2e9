"""The `sluice` command: ingest, retry-failed, deploy, serve, query, demo, status, reembed,
versions, rollback, eval, tune, train-reranker, train-embedder, config check."""

from __future__ import annotations

import typer

from sluice.cli import (
    config_commands,
    eval_commands,
    index_commands,
    ingest_commands,
    serve_commands,
)

app = typer.Typer(help="Sluice: RAG ingestion and hybrid retrieval.", no_args_is_help=True)

app.command()(ingest_commands.ingest)
app.command(name="retry-failed")(ingest_commands.retry_failed)
app.command()(ingest_commands.deploy)
app.command()(serve_commands.serve)
app.command()(serve_commands.query)
app.command()(index_commands.status)
app.command()(index_commands.reembed)
app.command()(index_commands.versions)
app.command()(index_commands.rollback)
app.command(name="eval")(eval_commands.evaluate)
app.command()(eval_commands.tune)
app.command(name="train-reranker")(eval_commands.train_reranker)
app.command(name="train-embedder")(eval_commands.train_embedder)
app.command()(serve_commands.demo)
app.add_typer(config_commands.app, name="config")
