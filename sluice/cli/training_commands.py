"""`sluice train-reranker`, `train-embedder` and `adapt`: models trained on a labelled set, on
what users clicked, or on the corpus alone."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from config.settings import Settings
from sluice.cli.common import (
    IndexOption,
    console,
    exit_on,
    index_errors,
    load_settings,
    out,
    progress_bars,
    use_prefect,
)
from sluice.cli.feedback_commands import SinceOption, feedback_training_pairs, gate_reranker

if TYPE_CHECKING:
    from pipelines.training_pairs import TrainingPair


FromFeedback = Annotated[
    bool,
    typer.Option(
        "--from-feedback",
        help="Train on the index's /feedback instead of a BEIR folder (docs/feedback.md).",
    ),
]


def train_reranker(
    dataset_dir: Annotated[
        Path | None, typer.Argument(help="BEIR folder with qrels/train.tsv.")
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="Where to save the model.")] = Path(
        "models/reranker"
    ),
    epochs: Annotated[
        float | None,
        typer.Option(help="Passes over the training pairs [default: 1.5; 3 with --from-feedback]."),
    ] = None,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query.")] = 12,
    max_length: Annotated[int, typer.Option(help="Tokens per (query, passage) pair.")] = 128,
    max_queries: Annotated[int | None, typer.Option(help="Train on fewer queries.")] = None,
    loss: Annotated[str, typer.Option(help="listwise or bce (pointwise).")] = "listwise",
    head: Annotated[
        str, typer.Option(help="segment (starts from the bi-encoder's ranking) or classifier.")
    ] = "segment",
    batch_size: Annotated[
        int, typer.Option(help="Positives with their negatives (listwise) or pairs (bce) per step.")
    ] = 4,
    pairs_file: Annotated[
        Path | None,
        typer.Option("--pairs", help="Train on pairs saved by an earlier run; skip mining."),
    ] = None,
    from_feedback: FromFeedback = False,
    since: SinceOption = None,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune a cross-encoder from the packaged MiniLM on a BEIR train split, or, with
    --from-feedback, on what users clicked (then gated on held-out feedback queries).

    The mined pairs are saved as OUT/training-pairs.jsonl for `--pairs` next time.
    """
    settings = load_settings(index)
    from pipelines.reranker_training import (
        FEEDBACK_EPOCHS,
        LABELLED_EPOCHS,
        check_recipe,
        train_cross_encoder,
    )

    with exit_on("train-reranker", ValueError):
        loss_name, head_name = check_recipe(loss, head)
    if epochs is None:
        epochs = FEEDBACK_EPOCHS if from_feedback else LABELLED_EPOCHS
    started = time.perf_counter()
    with exit_on("train-reranker", ValueError, *index_errors()):
        pairs, queries, heldout = _pairs(
            settings, dataset_dir, output, negatives, max_queries, pairs_file, from_feedback, since
        )
    mined = time.perf_counter()
    console.print(
        f"{len(pairs)} pairs from {queries} queries in {mined - started:.0f} s; training…"
    )
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its metrics: not --json's
        train_cross_encoder(
            pairs,
            output,
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            loss_name=loss_name,
            head=head_name,
        )
    trained = time.perf_counter()
    gate = gate_reranker(settings, output, heldout) if heldout is not None else None
    _report_training(
        as_json,
        output,
        len(pairs),
        queries,
        mined - started,
        trained - mined,
        f"use it with SLUICE_RERANKER_MODEL={output}",
        {} if gate is None else {"gate": gate},
    )
    if gate is not None and not as_json:
        _report_gate(gate, output)


def _training_pairs(
    settings: Settings,
    dataset_dir: Path,
    output: Path,
    negatives: int,
    max_queries: int | None,
    pairs_file: Path | None,
) -> tuple[list[TrainingPair], int]:
    """Pairs mined with hybrid search on an index of the train split's corpus (saved as
    OUT/training-pairs.jsonl), or read back from `pairs_file`; and how many queries they cover."""
    from pipelines.training_pairs import mine_pairs, read_pairs, write_pairs

    if pairs_file is not None:
        pairs = read_pairs(pairs_file)
        return pairs, len({p.query for p in pairs})
    from composition.components import Components
    from flows.evaluate_flow import index_dataset
    from pipelines.beir import load_beir

    dataset = load_beir(dataset_dir, split="train")
    if max_queries:
        kept = sorted(dataset.queries)[:max_queries]
        dataset.queries = {q: dataset.queries[q] for q in kept}
    parts = Components(settings)
    embedder, store = parts.embedder(), parts.store()
    try:
        with progress_bars(True):
            alias, _, _ = index_dataset(dataset, parts, embedder, store)
        searcher = parts.searcher(store, lambda spec: embedder)
        pairs = mine_pairs(dataset, searcher, alias, negatives)
    finally:
        store.close()
    write_pairs(output / "training-pairs.jsonl", pairs)
    return pairs, len(dataset.queries)


def _pairs(
    settings: Settings,
    dataset_dir: Path | None,
    output: Path,
    negatives: int,
    max_queries: int | None,
    pairs_file: Path | None,
    from_feedback: bool,
    since: str | None,
) -> tuple[list[TrainingPair], int, Path | None]:
    """Training pairs, their query count, and the held-out golden set to gate on (feedback)."""
    from pipelines.training_pairs import write_pairs

    if not from_feedback or pairs_file is not None:
        if dataset_dir is None and pairs_file is None:
            raise ValueError("give a BEIR folder with qrels/train.tsv, or --from-feedback")
        if dataset_dir is not None and not (dataset_dir / "qrels" / "train.tsv").is_file():
            raise ValueError(f"{dataset_dir}/qrels/train.tsv is missing")
        return (
            *_training_pairs(
                settings, dataset_dir or Path(), output, negatives, max_queries, pairs_file
            ),
            None,
        )
    pairs, queries, heldout = feedback_training_pairs(settings, since, negatives)
    write_pairs(output / "training-pairs.jsonl", pairs)
    if not pairs:
        raise ValueError("the feedback gives no query both a clicked hit and a passed-over one")
    return pairs, queries, heldout


def _report_gate(gate: dict[str, Any], output: Path) -> None:
    """The reranker gate's verdict, and how to switch (or not)."""
    verdict = "[green]passed[/green]" if gate["passed"] else "[red]failed[/red]"
    blend = gate["blend"]
    out.print(
        f"gate {verdict} on {gate['queries']} held-out feedback queries: {gate['metric']} "
        f"{gate['old']:.4f} ({gate['serving']}) → {gate['new']:.4f} at blend {blend} "
        f"({gate['new_at_serving_blend']:.4f} at the serving {gate['serving_blend']}; "
        f"tolerance {gate['tolerance']})"
    )
    if gate["passed"] and blend == gate["serving_blend"]:
        out.print(f"switch: SLUICE_RERANKER_MODEL={output}; roll back: set it to what it was")
    elif gate["passed"]:
        out.print(
            f"switch: SLUICE_RERANKER_MODEL={output} SLUICE_RERANK_BLEND={blend} (where `sluice "
            "tune` recorded a blend for the index, run it again with the new model instead); "
            "roll back: set them to what they were"
        )


def train_embedder(
    dataset_dir: Annotated[
        Path | None, typer.Argument(help="BEIR folder with qrels/train.tsv.")
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="Where to save the model.")] = Path(
        "models/embedder"
    ),
    epochs: Annotated[float, typer.Option(help="Passes over the training rows.")] = 2.0,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query row.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Rows per step (in-batch negatives).")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-5,
    max_queries: Annotated[int | None, typer.Option(help="Train on fewer queries.")] = None,
    pairs_file: Annotated[
        Path | None,
        typer.Option("--pairs", help="Train on pairs saved by an earlier run; skip mining."),
    ] = None,
    from_feedback: FromFeedback = False,
    since: SinceOption = None,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune the embedding model (SLUICE_EMBEDDING_MODEL) on a BEIR train split, or, with
    --from-feedback, on what users clicked, with hard negatives from Sluice's own answers;
    switch an index to it with `sluice reembed --model` (gated, and rolled back with
    `sluice rollback`)."""
    settings = load_settings(index)
    from pipelines.embedder_training import train_bi_encoder

    started = time.perf_counter()
    with exit_on("train-embedder", ValueError, *index_errors()):
        pairs, queries, heldout = _pairs(
            settings,
            dataset_dir,
            output,
            max(1, negatives),
            max_queries,
            pairs_file,
            from_feedback,
            since,
        )
    mined = time.perf_counter()
    console.print(
        f"{len(pairs)} pairs from {queries} queries in {mined - started:.0f} s; training…"
    )
    with exit_on("train-embedder", ValueError, OSError), contextlib.redirect_stdout(sys.stderr):
        train_bi_encoder(
            pairs,
            output,
            settings.embedding_model,
            epochs,
            batch_size,
            negatives,
            learning_rate,
            device=None if settings.embedding_device == "auto" else settings.embedding_device,
        )
    _report_training(
        as_json,
        output,
        len(pairs),
        queries,
        mined - started,
        time.perf_counter() - mined,
        f"switch an index to it with: sluice reembed --model {output}"
        + (f" --golden {heldout}" if heldout else ""),
        {} if heldout is None else {"heldout_golden": str(heldout)},
    )


def _report_training(
    as_json: bool,
    output: Path,
    pairs: int,
    queries: int,
    mining_s: float,
    training_s: float,
    next_step: str,
    extra: dict[str, Any],
) -> None:
    """One report, one JSON document with --json (with the gate's verdict or the held-out
    golden set where feedback gave one)."""
    if as_json:
        report = {
            "model": str(output.resolve()),
            "pairs": pairs,
            "queries": queries,
            "mining_seconds": round(mining_s, 1),
            "training_seconds": round(training_s, 1),
            **extra,
        }
        out.print_json(json.dumps(report))
        return
    out.print(f"saved {output} after {training_s:.0f} s of training; {next_step}")


def adapt(
    output: Annotated[Path, typer.Option("--out", help="Where to save the model.")] = Path(
        "models/adapted"
    ),
    max_queries: Annotated[
        int, typer.Option(min=10, help="Pseudo-queries made from the corpus.")
    ] = 2000,
    epochs: Annotated[float, typer.Option(help="Passes over the pseudo-queries.")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Rows per step (in-batch negatives).")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-5,
    layers: Annotated[
        int, typer.Option(min=1, help="Train only the top N transformer layers.")
    ] = 2,
    golden: Annotated[
        Path | None,
        typer.Option(help="Gate on this golden set (default SLUICE_GOLDEN_SET, else replay)."),
    ] = None,
    train_only: Annotated[
        bool, typer.Option("--train-only", help="Save the model; do not re-embed.")
    ] = False,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune the index's embedding model on its own corpus, with no queries and no labels
    (titles, sentences or spans as pseudo-queries, BM25 hard negatives; docs/retrieval-quality.md),
    then re-embed the index with it: gated on the golden set, or on a replay of logged queries
    when there is none."""
    settings = load_settings(index)
    from composition.components import Components
    from pipelines.adaptation import adaptation_pairs
    from pipelines.embedder_training import train_bi_encoder

    started = time.perf_counter()
    parts = Components(settings)
    store = parts.store()
    with exit_on("adapt", ValueError, *index_errors()):
        try:
            collection = store.resolve_alias(settings.index_name)
            spec = store.collection_spec(collection) if collection else None
            if collection is None or spec is None:
                raise ValueError(f"index {settings.index_name} has no serving version to adapt to")
            payloads = (p.payload for page in store.read_points(collection) for p in page)
            pairs, made = adaptation_pairs(payloads, parts.searcher(store), collection, max_queries)
        finally:
            store.close()
        if not pairs:
            raise ValueError("no chunk is long enough to make a pseudo-query of")
    mined = time.perf_counter()
    console.print(
        f"{made['title']} title, {made['ict']} sentence and {made['crop']} span pseudo-queries in "
        f"{mined - started:.0f} s; training {spec.embedding_model}…"
    )
    with exit_on("adapt", ValueError, OSError), contextlib.redirect_stdout(sys.stderr):
        train_bi_encoder(
            pairs,
            output,
            spec.embedding_model,
            epochs,
            batch_size,
            1,
            learning_rate,
            device=None if settings.embedding_device == "auto" else settings.embedding_device,
            trainable_layers=layers,
        )
    trained = time.perf_counter()
    report: dict[str, Any] = {
        "model": str(output.resolve()),
        "base_model": spec.embedding_model,
        "pseudo_queries": made,
        "mining_seconds": round(mined - started, 1),
        "training_seconds": round(trained - mined, 1),
    }
    if not train_only:
        use_prefect(settings)
        from flows.reembed_flow import reembed_flow

        errors = (*index_errors(), OSError, RuntimeError, ValueError)
        with exit_on("adapt", *errors), progress_bars(not as_json):
            report["reembed"] = reembed_flow(
                str(output), False, str(golden) if golden else None, settings=settings
            )
    if as_json:
        out.print_json(json.dumps(report))
    else:
        out.print(f"saved {output} after {report['training_seconds']:.0f} s of training")
        if "reembed" in report:
            from rich.markdown import Markdown

            from pipelines.reembed_report import ReembedReport

            out.print(Markdown(ReembedReport.from_dict(report["reembed"]).to_markdown()))
    if report.get("reembed", {}).get("outcome") == "rejected":
        raise typer.Exit(3)
