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
    export: Annotated[
        bool,
        typer.Option(
            "--export",
            help="Instead, export the configured embedding model and reranker for their "
            "backends now, into SLUICE_MODEL_EXPORTS_DIR: a process that finds its export "
            "starts without torch (build it into an image, or run it once per machine).",
        ),
    ] = False,
) -> None:
    """Embedding models and rerankers usable without a model hub: the packaged default, the
    local hub cache, and trained models (`sluice train-embedder`, `train-reranker`).

    Pass NAME as `--model` (reembed), SLUICE_EMBEDDING_MODEL or SLUICE_RERANKER_MODEL; each
    spelling of one model (a bare name, its hub id, its folder) is the same model."""
    if export:
        export_configured_models(as_json)
        return
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


def export_configured_models(as_json: bool) -> None:
    """Loads each configured model once, which exports it where its backend runs an export
    and none is made yet (an export of the same model files is reused, never made again)."""
    from composition.components import Components
    from index.models.embedder import SentenceTransformerEmbedder
    from index.models.reranker import CrossEncoderReranker

    settings = load_settings()
    components = Components(settings)
    folder = settings.model_exports_path
    made = []
    for model in (components.embedder(), components.reranker()):
        if isinstance(model, SentenceTransformerEmbedder | CrossEncoderReranker):
            if model.backend.label != "torch":  # torch runs the weights: nothing to export
                model.warm_up()
            made.append({"model": model.model_id, "backend": model.backend.label})
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
    megabytes = round(sum(f.stat().st_size for f in files) / 1e6, 1)
    if as_json:
        report = {"exports_dir": str(folder), "megabytes": megabytes, "models": made}
        out.print_json(json.dumps(report))
        return
    table = report_table(
        f"Models exported into {folder} ({megabytes:.0f} MB)", ("model", "backend")
    )
    for row in made:
        note = " (runs its own weights: nothing to export)" if row["backend"] == "torch" else ""
        table.add_row(row["model"], row["backend"] + note)
    out.print(table)
