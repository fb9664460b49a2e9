"""`sluice models`: the models this machine can use offline, with the exact name to pass."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from sluice.cli.common import load_settings, out, report_table


def models(
    folder: Annotated[
        list[Path] | None,
        typer.Option(help="Also look here for model folders (default: ./models)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Embedding models and rerankers usable without a model hub: the packaged default, the
    local hub cache, and trained models (`sluice train-embedder`, `train-reranker`).

    Pass NAME as `--model` (reembed), SLUICE_EMBEDDING_MODEL or SLUICE_RERANKER_MODEL; each
    spelling of one model (a bare name, its hub id, its folder) is the same model."""
    load_settings(reads_only=True)
    from index.models.catalog import offline_models

    found = offline_models(folder or [Path("models")])
    if as_json:
        out.print_json(json.dumps([asdict(model) for model in found]))
        return
    table = report_table(
        "Models usable offline here",
        ("name", "kind", "dimension", "max tokens", "MB", "from"),
        right=("dimension", "max tokens", "MB"),
    )
    for model in found:
        table.add_row(
            model.name,
            model.kind,
            str(model.dimension or ""),
            str(model.max_tokens or ""),
            f"{model.megabytes:.0f}",
            model.where,
        )
    out.print(table)
