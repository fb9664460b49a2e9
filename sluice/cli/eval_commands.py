"""`sluice eval` and `tune`: measuring retrieval quality and choosing how to search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown

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
