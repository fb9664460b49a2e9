"""The `sluice` command: ingest, retry-failed, deploy, serve, query, status, reembed, versions,
rollback, eval, train-reranker, demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sluice.runtime import prepare_process
from sluice.settings import Settings

app = typer.Typer(help="Sluice: RAG ingestion and hybrid retrieval.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()

REPO_DOCS = Path(__file__).resolve().parent.parent / "docs"


def _settings(index: str | None = None) -> Settings:
    try:
        settings = Settings(index_name=index) if index else Settings()
    except Exception as error:
        console.print(f"[red]invalid configuration:[/red] {error}")
        raise typer.Exit(2) from error
    from index.embedder import resolve_model_path

    local_model = Path(resolve_model_path(settings.embedding_model)).exists()
    prepare_process(settings.data_dir, hub_offline=local_model)
    return settings


IndexOption = Annotated[
    str | None, typer.Option("--index", help="Index name (default SLUICE_INDEX_NAME).")
]


def _index_errors() -> tuple[type[Exception], ...]:
    """Failures of a command on an index that a user acts on: it is busy, held, or missing."""
    from index.edge_store import IndexLockedError
    from index.searcher import IndexNotFoundError
    from ingest.manifest import IngestAlreadyRunning

    return (IndexLockedError, IndexNotFoundError, IngestAlreadyRunning)


@contextmanager
def _exit_on(what: str, *errors: type[BaseException]) -> Iterator[None]:
    """Expected failures print one line and exit with code 2, never a traceback."""
    try:
        yield
    except errors as error:
        console.print(f"[red]{what} failed:[/red] {error}")
        raise typer.Exit(2) from error


@contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Draws a bar per pipeline stage while a flow reports progress in this process."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from flows.progress import set_progress_listener

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


def _run_ingest(
    settings: Settings,
    source: str | None,
    path: Path | None,
    dry_run: bool,
    show_progress: bool,
) -> dict[str, Any]:
    from flows.ingest_flow import ingest_flow

    console.print("[dim]starting Prefect (a local server on first use can take ~30 s)…[/dim]")
    with _progress_bars(show_progress):
        report: dict[str, Any] = ingest_flow(
            source=source,
            path=str(path) if path else None,
            dry_run=dry_run,
            settings=settings,
        )
    return report


def _print_report(report: dict[str, Any]) -> None:
    title = "Plan (dry run, nothing written)" if report["dry_run"] else "Ingest"
    table = Table(title=f"{title}: {report['source']} into '{report['index']}'")
    columns = ("new", "changed", "unchanged", "deleted", "failed", "chunks", "embedded")
    for column in (*columns, "from cache", "points", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(report[c]) for c in columns),
        str(report["from_cache"]),
        str(report["points_in_index"]),
        f"{report['seconds']:.1f}",
    )
    out.print(table)
    if report["deletions_held"]:
        out.print(f"[yellow]deletions held:[/yellow] {report['deletions_held']}")
    documents = report["documents"]
    rows = [(d["uri"], "new", d["reason"]) for d in documents["new"]]
    rows += [(d["uri"], "changed", d["reason"]) for d in documents["changed"]]
    rows += [(uri, "deleted", "gone from the source") for uri in documents["deleted"]]
    rows += [(d["uri"], "failed", d["reason"]) for d in documents["failed"]]
    rows += [
        (uri, "quarantined", "skipped; sluice retry-failed") for uri in documents["quarantined"]
    ]
    if rows:
        details = Table(title="Documents")
        details.add_column("document", overflow="fold")  # long URIs wrap, never lose their end
        details.add_column("outcome")
        details.add_column("reason", overflow="fold")
        for row in rows[:200]:
            details.add_row(*row)
        out.print(details)
        if len(rows) > 200:
            out.print(f"… and {len(rows) - 200} more (--json lists them all)")


def _ingest_runs(
    settings: Settings,
    path: Path | None,
    source: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """One run per source: PATH, --source, or every configured source."""
    from ingest.types import SourceUnavailable

    if path is not None:
        runs: list[tuple[str | None, Path | None]] = [(None, path)]
    elif source is not None:
        runs = [(source, None)]
    else:
        runs = [(s.name, None) for s in settings.sources]
    if not runs:
        console.print("[red]nothing to ingest:[/red] give a PATH, or configure [[sources]]")
        raise typer.Exit(2)
    reports = []
    for name, folder in runs:
        with _exit_on("ingest", *_index_errors(), SourceUnavailable, KeyError, ValueError):
            reports.append(_run_ingest(settings, name, folder, dry_run, not as_json))
    if as_json:
        out.print_json(json.dumps(reports[0] if len(reports) == 1 else reports))
        return
    for report in reports:
        _print_report(report)


@app.command()
def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="Folder or file; omit to run configured sources.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="A configured source, by name.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Glob to include (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Glob to exclude (repeatable).")] = None,
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Bring the index up to date with PATH, one --source, or every configured source.

    Only what changed is read, parsed and embedded; documents gone from a source are deleted.
    """
    settings = _settings(index)
    if include or exclude:
        settings = settings.model_copy(
            update={"include": include or settings.include, "exclude": exclude or settings.exclude}
        )
    if path is not None and not path.exists():
        console.print(f"[red]{path} does not exist[/red]")
        raise typer.Exit(2)
    _ingest_runs(settings, path, source, dry_run, as_json)


@app.command(name="retry-failed")
def retry_failed(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Give quarantined documents a fresh set of attempts, then run their sources again."""
    settings = _settings(index)
    from ingest.manifest import Manifest

    manifest = Manifest(settings.manifest_path())
    try:
        by_source = {r.source for r in manifest.documents(source).values() if r.status != "indexed"}
        released = manifest.release_quarantine(source)
    finally:
        manifest.close()
    console.print(f"released {len(released)} document(s) from quarantine")
    configured = {s.name for s in settings.sources}
    for name in sorted(by_source):
        if name in configured:
            _ingest_runs(settings, None, name, False, as_json)
        elif name.startswith("file://"):
            from urllib.parse import unquote, urlparse

            _ingest_runs(settings, Path(unquote(urlparse(name).path)), None, False, as_json)


@app.command()
def deploy(
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
) -> None:
    """Serve every configured source as a Prefect deployment on its cron schedule.

    Runs against the Prefect API in PREFECT_API_URL (start one with `prefect server start`);
    keeps running, starting each scheduled run, until interrupted.
    """
    settings = _settings(index)
    if not settings.sources:
        console.print("[red]no sources configured:[/red] add [[sources]] to the config file")
        raise typer.Exit(2)
    import os

    from prefect import serve

    from flows.deployments import source_deployments

    table = Table(title=f"Deployments for index '{settings.index_name}'")
    for column in ("deployment", "type", "schedule"):
        table.add_column(column)
    for source in settings.sources:
        table.add_row(f"ingest/{source.name}", source.type, source.schedule or "manual only")
    out.print(table)
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        console.print(
            "[yellow]PREFECT_API_URL is not set:[/yellow] runs go to a temporary local server "
            "with no UI. Start `prefect server start` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api to see them in Prefect's UI."
        )
    serve(*source_deployments(settings), print_starting_message=bool(api))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve POST /retrieve, /health, /ready and the OpenAPI docs at /docs."""
    settings = _settings()
    import uvicorn

    from retrieval_api.app import create_app

    uvicorn.run(
        create_app(settings), host=host or settings.api_host, port=port or settings.api_port
    )


def _api_url(settings: Settings) -> str | None:
    import httpx

    url = f"http://{settings.api_host}:{settings.api_port}"
    try:
        httpx.get(f"{url}/health", timeout=0.5).raise_for_status()
    except httpx.HTTPError:
        return None
    return url


@app.command()
def query(
    text: Annotated[str, typer.Argument(help="The query.")],
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    top_k: Annotated[int, typer.Option(help="Number of hits.")] = 5,
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw response.")] = False,
) -> None:
    """Print ranked results, through a running `sluice serve` if there is one, else in-process."""
    settings = _settings(index)
    body = {"query": text, "mode": mode, "top_k": top_k}
    url = _api_url(settings)
    if url:
        import httpx

        http_answer = httpx.post(f"{url}/retrieve", json=body, timeout=60)
        response = http_answer.json()
        if http_answer.status_code != 200:
            console.print(f"[red]{response.get('error', {}).get('message', '')}[/red]")
            raise typer.Exit(2)
    else:
        from fastapi.testclient import TestClient

        from retrieval_api.app import create_app

        with TestClient(create_app(settings)) as client:
            answer = client.post("/retrieve", json=body)
            response = answer.json()
        if answer.status_code != 200:
            console.print(f"[red]{response.get('error', {}).get('message', answer.text)}[/red]")
            raise typer.Exit(2)
    if as_json:
        out.print_json(json.dumps(response))
        return
    if not response["hits"]:
        out.print("no hits (is the index empty?)")
        return
    table = Table(title=f"{mode}: {text}")
    for column in ("#", "score", "document", "pages", "text"):
        table.add_column(column)
    for hit in response["hits"]:
        snippet = " ".join(hit["text"].split())[:160]
        where = hit["title"] or hit["uri"]
        table.add_row(
            str(hit["rank"]),
            f"{hit['score']:.4f}",
            where,
            ",".join(map(str, hit["pages"])),
            snippet,
        )
    out.print(table)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Each index: alias, collection version, embedding model, point and document counts."""
    settings = _settings()
    from index.from_settings import build_store

    store = build_store(settings)
    try:
        indexes: dict[str, dict[str, Any]] = {}
        for alias, collection in store.list_aliases().items():
            spec = store.collection_spec(collection)
            indexes[alias] = {
                "collection": collection,
                "embedding_model": spec.embedding_model if spec else None,
                "dimension": spec.dimension if spec else None,
                "points": store.count(collection),
                "documents": store.distinct_values(collection, "doc_id"),
                "created_at": spec.created_at if spec else None,
                **_manifest_summary(settings, alias),
            }
    finally:
        store.close()
    deployment = settings.qdrant_url or f"embedded ({settings.qdrant_path})"
    if as_json:
        out.print_json(json.dumps({"qdrant": deployment, "indexes": indexes}))
        return
    table = Table(title=f"Sluice indexes on {deployment}")
    for column in ("index", "collection", "embedding model", "points", "documents"):
        table.add_column(column)
    for alias, info in indexes.items():
        table.add_row(
            alias,
            info["collection"],
            str(info["embedding_model"]),
            str(info["points"]),
            str(info["documents"]),
        )
    out.print(table)


def _manifest_summary(settings: Settings, index: str) -> dict[str, Any]:
    """Documents by status and the last runs, from the index's manifest (if it has one)."""
    path = settings.manifest_path(index)
    if not path.exists():
        return {}
    from collections import Counter

    from ingest.manifest import Manifest

    manifest = Manifest(path)
    try:
        by_status = Counter(r.status for r in manifest.documents().values())
        runs = [
            {
                "source": run.source,
                "finished": run.finished_at is not None,
                **{
                    k: (run.report or {}).get(k)
                    for k in ("new", "changed", "unchanged", "deleted", "failed", "seconds")
                },
            }
            for run in manifest.runs(limit=5)
        ]
    finally:
        manifest.close()
    return {"manifest": dict(by_status), "last_runs": runs}


@app.command()
def reembed(
    model: Annotated[str, typer.Option(help="sentence-transformers model id or local path.")],
    force: Annotated[
        bool, typer.Option(help="Switch even if the gate fails, or with no golden set.")
    ] = False,
    golden: Annotated[
        Path | None,
        typer.Option(help="Golden set (default SLUICE_GOLDEN_SET): BEIR folder or JSONL."),
    ] = None,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Build a new version of the index with another embedding model from its stored chunks,
    compare both on the golden set, and switch only if the new one is no worse."""
    settings = _settings(index)
    from flows.reembed_flow import reembed_flow

    # OSError: a model that cannot be found or loaded (hub errors are OSErrors too);
    # ValueError covers a missing or unusable golden set.
    errors = (*_index_errors(), OSError, RuntimeError, ValueError)
    with _exit_on("re-embed", *errors), _progress_bars(not as_json):
        report = reembed_flow(model, force, str(golden) if golden else None, settings=settings)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        from flows.reembed_flow import ReembedReport

        out.print(ReembedReport(**report).to_markdown())
    if report["outcome"] == "rejected":
        raise typer.Exit(3)


def _version_rows(settings: Settings) -> list[dict[str, Any]]:
    from index.from_settings import build_store
    from index.versions import collection_name, versions_of
    from ingest.manifest import Manifest

    store = build_store(settings)
    manifest = Manifest(settings.manifest_path())
    try:
        serving = store.resolve_alias(settings.index_name)
        records = manifest.versions()
        rows: list[dict[str, Any]] = []
        for number in versions_of(store, settings.index_name):
            name = collection_name(settings.index_name, number)
            spec = store.collection_spec(name)
            record = records.get(name)
            rows.append(
                {
                    "version": number,
                    "collection": name,
                    "serving": name == serving,
                    "state": "serving" if name == serving else (record.state if record else "kept"),
                    "embedding_model": spec.embedding_model if spec else None,
                    "dimension": spec.dimension if spec else None,
                    "points": store.count(name),
                    "created_at": spec.created_at if spec else None,
                    "scores": record.scores if record else {},
                }
            )
        return rows
    finally:
        manifest.close()
        store.close()


@app.command()
def versions(
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The index's collection versions: model, dimension, points, created, state, eval scores."""
    settings = _settings(index)
    with _exit_on("versions", *_index_errors()):
        rows = _version_rows(settings)
    if as_json:
        out.print_json(json.dumps({"index": settings.index_name, "versions": rows}))
        return
    table = Table(title=f"Versions of '{settings.index_name}'")
    for column in ("version", "state", "embedding model", "dim", "points", "created", "scores"):
        table.add_column(column, overflow="fold")
    for row in rows:
        scores = "; ".join(
            f"{mode} " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k)
            for mode, metrics in row["scores"].items()
        )
        table.add_row(
            str(row["version"]),
            row["state"],
            str(row["embedding_model"]),
            str(row["dimension"]),
            str(row["points"]),
            str(row["created_at"]),
            scores,
        )
    out.print(table)


@app.command()
def rollback(
    to: Annotated[
        int | None, typer.Option(help="Version number to serve (default: the previous one).")
    ] = None,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Point the index back at an older version, caught up with what was ingested since."""
    settings = _settings(index)
    from flows.reembed_flow import rollback as roll_back

    console.print("[dim]waiting for any ingest run into the index to finish…[/dim]")
    with _exit_on("rollback", *_index_errors(), OSError, ValueError):
        report = roll_back(settings, to).to_dict()
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"'{report['index']}' now serves {report['serving']} ({report['embedding_model']}, "
        f"{report['points']} points; was {report['previous']}); caught up "
        f"{report['caught_up']['points']} points in {report['seconds']:.1f} s"
    )


@app.command(name="eval")
def evaluate(
    dataset_dir: Annotated[
        Path, typer.Argument(help="BEIR-format folder (corpus, queries, qrels).")
    ],
    mode: Annotated[
        list[str] | None, typer.Option(help="bm25, dense, hybrid (repeatable; default all).")
    ] = None,
    max_docs: Annotated[int | None, typer.Option(help="Evaluate on a slice of the corpus.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--out", help="Report folder (JSON, Markdown, PNG).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Score each retrieval mode on a BEIR dataset: nDCG@10, Recall@100, MRR@10."""
    settings = _settings()
    from flows.evaluate_flow import evaluate_flow

    if not dataset_dir.is_dir():
        console.print(f"[red]{dataset_dir} is not a folder[/red]")
        raise typer.Exit(2)
    with _exit_on("eval", FileNotFoundError), _progress_bars(not as_json):
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
    table = Table(
        title=f"{report['dataset']}: {report['queries']} queries, {report['documents']} documents"
    )
    for column in ("mode", "nDCG@10", "Recall@100", "MRR@10", "ms/query"):
        table.add_column(column, justify="right")
    for name, scores in report["modes"].items():
        table.add_row(
            name,
            f"{scores['ndcg@10']:.4f}",
            f"{scores['recall@100']:.4f}",
            f"{scores['mrr@10']:.4f}",
            f"{scores['ms_per_query']:.1f}",
        )
    out.print(table)
    console.print(
        f"indexed in {report['seconds']['index']:.1f} s ({report['embedded']} embedded, "
        f"{report['from_cache']} from cache); total {report['seconds']['total']:.1f} s"
    )


@app.command(name="train-reranker")
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
) -> None:
    """Fine-tune a cross-encoder from the packaged MiniLM on a BEIR train split.

    The mined pairs are saved as OUT/training-pairs.jsonl for `--pairs` next time.
    """
    import dataclasses
    import time

    settings = _settings()
    from flows.reranker_training import (
        TrainingPair,
        check_recipe,
        mine_pairs,
        train_cross_encoder,
    )

    with _exit_on("train-reranker", ValueError):
        loss_name, head_name = check_recipe(loss, head)
    started = time.perf_counter()
    if pairs_file is not None:
        pairs = [TrainingPair(**json.loads(line)) for line in pairs_file.read_text().splitlines()]
        queries = len({p.query for p in pairs})
    else:
        from flows.beir import load_beir
        from flows.evaluate_flow import index_dataset
        from index.from_settings import build_embedder, build_store
        from index.searcher import IndexSearcher

        dataset = load_beir(dataset_dir, split="train")
        if max_queries:
            kept = sorted(dataset.queries)[:max_queries]
            dataset.queries = {q: dataset.queries[q] for q in kept}
        embedder, store = build_embedder(settings), build_store(settings)
        try:
            with _progress_bars(True):
                alias, _, _ = index_dataset(dataset, settings, embedder, store)
            pairs = mine_pairs(
                dataset, IndexSearcher(store, lambda spec: embedder), alias, negatives
            )
        finally:
            store.close()
        queries = len(dataset.queries)
        output.mkdir(parents=True, exist_ok=True)
        (output / "training-pairs.jsonl").write_text(
            "".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in pairs)
        )
    mined = time.perf_counter()
    console.print(
        f"{len(pairs)} pairs from {queries} queries in {mined - started:.0f} s; training…"
    )
    train_cross_encoder(
        pairs,
        output,
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        loss_name=loss_name,
        head=head_name,
    )
    out.print(
        f"saved {output} after {time.perf_counter() - mined:.0f} s of training; use it with "
        f"SLUICE_RERANKER_MODEL={output}"
    )


@app.command()
def demo(
    path: Annotated[Path, typer.Option(help="Corpus to ingest.")] = REPO_DOCS,
    port: Annotated[int | None, typer.Option(help="Port to serve on.")] = None,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Ingest the project's own documentation, then serve /retrieve on 127.0.0.1."""
    settings = _settings()
    report = _run_ingest(settings, None, path, False, show_progress=sys.stderr.isatty())
    _print_report(report)
    port = port or settings.api_port
    out.print(
        "\n[bold]Query it[/bold] (in another terminal):\n"
        f"  curl -s http://127.0.0.1:{port}/retrieve -H 'content-type: application/json' "
        '-d \'{"query": "How does Sluice keep re-ingestion free of duplicates?", "top_k": 3}\'\n'
        f'  .venv/bin/sluice query "which embedded Qdrant engine does Sluice use?"\n'
        f"  API docs: http://127.0.0.1:{port}/docs\n",
        soft_wrap=True,
    )
    if serve_api:
        serve(host="127.0.0.1", port=port)
