"""`sluice eval`, `tune` and `train-reranker`: measuring retrieval quality and improving it."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markdown import Markdown

from config.settings import Settings
from sluice.cli.common import (
    IndexOption,
    console,
    exit_on,
    index_errors,
    load_settings,
    out,
    progress_bars,
    report_table,
    use_prefect,
)

if TYPE_CHECKING:
    from pipelines.training_pairs import TrainingPair


def evaluate(
    dataset_dir: Annotated[
        Path | None, typer.Argument(help="BEIR-format folder (corpus, queries, qrels).")
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            help="bm25, dense, hybrid, hybrid+rerank (repeatable; default all), each also with "
            "a result shape: hybrid+group_by, hybrid+mmr0.3 (MMR diversity 0.3)."
        ),
    ] = None,
    shapes: Annotated[
        bool,
        typer.Option(
            "--shapes", help="Also score hybrid with group_by and with MMR at 0.1, 0.3, 0.5."
        ),
    ] = False,
    max_docs: Annotated[int | None, typer.Option(help="Evaluate on a slice of the corpus.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--out", help="Report folder (JSON, Markdown, PNG).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
    replay_log: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="Instead: re-run the queries of this query log (a folder or a file, e.g. "
            "$SLUICE_DATA_DIR/query-log) on --against and compare the answers.",
        ),
    ] = None,
    against: Annotated[
        str | None, typer.Option(help="With --replay: the version to try (2, v2 or docs__v2).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="With --replay: the reference version (default: serving).")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="With --replay: the latest N distinct queries.")
    ] = 1000,
    index: IndexOption = None,
) -> None:
    """Score each retrieval mode on a BEIR dataset (nDCG@10, Recall@100, MRR@10), or, with
    --replay, how much another version changes the answers to logged queries."""
    if replay_log is not None:
        _replay(replay_log, against, baseline, limit, index, as_json)
        return
    settings = load_settings(index)
    if dataset_dir is None:
        console.print("[red]give a BEIR folder, or --replay QUERY_LOG --against VERSION[/red]")
        raise typer.Exit(2)
    if not dataset_dir.is_dir():
        console.print(f"[red]{dataset_dir} is not a folder[/red]")
        raise typer.Exit(2)
    use_prefect(settings)
    from flows.evaluate_flow import evaluate_flow
    from pipelines.evaluation import MODES, SHAPES

    if shapes:
        plain = [m for m in MODES if m != "hybrid+rerank" or settings.reranker_model]
        mode = [*(mode or plain), *SHAPES]
    with exit_on("eval", FileNotFoundError, ValueError), progress_bars(not as_json):
        report = evaluate_flow(
            str(dataset_dir),
            modes=mode,
            max_docs=max_docs,
            out_dir=str(report_dir) if report_dir else None,
            settings=settings,
        )
    if as_json:
        out.print_json(json.dumps(report))
        return
    columns = ("mode", "nDCG@10", "Recall@100", "MRR@10", "docs in top 10", "ms/query")
    table = report_table(
        f"{report['dataset']}: {report['queries']} queries, {report['documents']} documents",
        columns,
        right=columns,
    )
    for name, scores in report["modes"].items():
        table.add_row(
            name,
            f"{scores['ndcg@10']:.4f}",
            f"{scores['recall@100']:.4f}",
            f"{scores['mrr@10']:.4f}",
            f"{scores.get('distinct_docs@10', 0):.2f}",
            f"{scores['ms_per_query']:.1f}",
        )
    out.print(table)
    console.print(
        f"indexed in {report['seconds']['index']:.1f} s ({report['embedded']} embedded, "
        f"{report['from_cache']} from cache); total {report['seconds']['total']:.1f} s"
    )
    from pipelines.cost import Cost

    console.print(f"cost: {Cost.from_dict(report.get('cost')).describe()}")


def _replay(
    log: Path,
    against: str | None,
    baseline: str | None,
    limit: int,
    index: str | None,
    as_json: bool,
) -> None:
    if against is None:
        console.print("[red]--replay needs --against VERSION (see `sluice versions`)[/red]")
        raise typer.Exit(2)
    settings = load_settings(index)
    from flows.replay_flow import run_replay

    with exit_on("replay", FileNotFoundError, LookupError, *index_errors()):
        report = run_replay(settings, log, against, baseline, limit)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        return
    out.print(Markdown(report.to_markdown()))


def tune(
    golden: Annotated[
        Path | None,
        typer.Option(help="Golden set (default SLUICE_GOLDEN_SET): BEIR folder or JSONL."),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold split.")] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report the choice without recording it.")
    ] = False,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Choose the index's fusion, candidate pool and rerank blend on its golden set by k-fold
    cross-validation, and record them in the serving version (used by /retrieve)."""
    settings = load_settings(index)
    if golden is None and settings.golden_set is None:
        console.print(
            "[red]tune failed:[/red] no golden set: set SLUICE_GOLDEN_SET or pass --golden"
        )
        raise typer.Exit(2)
    use_prefect(settings)
    from flows.tune_flow import tune_flow

    errors = (*index_errors(), FileNotFoundError, ValueError)
    with exit_on("tune", *errors), progress_bars(False):
        report = tune_flow(
            str(golden) if golden else None, folds, seed, not dry_run, settings=settings
        )
    if as_json:
        out.print_json(json.dumps(report))
        return
    from pipelines.tuning import TuningReport

    out.print(Markdown(TuningReport(**report).to_markdown()))


def train_reranker(
    dataset_dir: Annotated[Path, typer.Argument(help="BEIR folder with qrels/train.tsv.")],
    output: Annotated[Path, typer.Option("--out", help="Where to save the model.")] = Path(
        "models/reranker"
    ),
    epochs: Annotated[float, typer.Option(help="Passes over the training pairs.")] = 1.5,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune a cross-encoder from the packaged MiniLM on a BEIR train split.

    The mined pairs are saved as OUT/training-pairs.jsonl for `--pairs` next time.
    """
    import time

    settings = load_settings()
    from pipelines.reranker_training import check_recipe, train_cross_encoder

    with exit_on("train-reranker", ValueError):
        loss_name, head_name = check_recipe(loss, head)
    started = time.perf_counter()
    pairs, queries = _training_pairs(
        settings, dataset_dir, output, negatives, max_queries, pairs_file
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
    _report_training(
        as_json,
        output,
        len(pairs),
        queries,
        mined - started,
        time.perf_counter() - mined,
        f"use it with SLUICE_RERANKER_MODEL={output}",
    )


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
    import dataclasses

    from pipelines.training_pairs import TrainingPair, mine_pairs

    if pairs_file is not None:
        pairs = [TrainingPair(**json.loads(line)) for line in pairs_file.read_text().splitlines()]
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
    output.mkdir(parents=True, exist_ok=True)
    (output / "training-pairs.jsonl").write_text(
        "".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in pairs)
    )
    return pairs, len(dataset.queries)


def train_embedder(
    dataset_dir: Annotated[Path, typer.Argument(help="BEIR folder with qrels/train.tsv.")],
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune the embedding model (SLUICE_EMBEDDING_MODEL) on a BEIR train split, with hard
    negatives from Sluice's hybrid search; switch an index to it with `sluice reembed --model`.
    """
    import time

    settings = load_settings()
    from pipelines.embedder_training import train_bi_encoder

    if not (dataset_dir / "qrels" / "train.tsv").is_file():
        console.print(f"[red]train-embedder failed:[/red] {dataset_dir}/qrels/train.tsv is missing")
        raise typer.Exit(2)
    started = time.perf_counter()
    pairs, queries = _training_pairs(
        settings, dataset_dir, output, max(1, negatives), max_queries, pairs_file
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
        f"switch an index to it with: sluice reembed --model {output}",
    )


def _report_training(
    as_json: bool,
    output: Path,
    pairs: int,
    queries: int,
    mining_s: float,
    training_s: float,
    next_step: str,
) -> None:
    if as_json:
        report = {
            "model": str(output.resolve()),
            "pairs": pairs,
            "queries": queries,
            "mining_seconds": round(mining_s, 1),
            "training_seconds": round(training_s, 1),
        }
        out.print_json(json.dumps(report))
        return
    out.print(f"saved {output} after {training_s:.0f} s of training; {next_step}")
