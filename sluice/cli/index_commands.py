"""`sluice status`, `reembed`, `versions` and `rollback`: an operator's view of an index."""

from __future__ import annotations

import json
from dataclasses import asdict
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
    prefect_api,
    prefect_hint,
    progress_bars,
    report_table,
    use_prefect,
)
from sluice.cli.run_commands import run_history, runs_table

if TYPE_CHECKING:
    from index.contracts import RetrievalTuning


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Each index: alias, collection version, embedding model, point and document counts."""
    settings = load_settings(reads_only=True)
    deployment = settings.qdrant_url or f"embedded ({settings.qdrant_path})"
    if settings.qdrant_url is None and not settings.data_dir.exists():
        if as_json:
            out.print_json(json.dumps({"qdrant": deployment, "indexes": {}}))
        else:
            console.print(f"no index yet: {settings.data_dir} does not exist (ingest creates it)")
        return
    from composition.components import Components
    from index.bm25.stats import measure_avgdl

    parts = Components(settings)
    store = parts.store()
    try:
        indexes: dict[str, dict[str, Any]] = {}
        for alias, collection in store.list_aliases().items():
            spec = store.collection_spec(collection)
            storage = parts.storage(store, alias)
            avgdl = measure_avgdl(store, collection, spec.bm25) if spec else None
            indexes[alias] = {
                "collection": collection,
                "embedding_model": spec.embedding_model if spec else None,
                "embedding_backend": spec.embedding_backend if spec else None,
                "dimension": spec.dimension if spec else None,
                "points": store.count(collection),
                "documents": store.distinct_values(collection, "doc_id"),
                "created_at": spec.created_at if spec else None,
                "storage": storage.to_dict(),
                "bm25_avgdl": avgdl.to_dict() if avgdl else None,
                **_manifest_summary(settings, alias),
            }
    finally:
        store.close()
    prefect = prefect_api(settings)
    if as_json:
        ui = prefect.removesuffix("/api") if prefect else None
        body = {"qdrant": deployment, "prefect": ui, "prefect_api": prefect, "indexes": indexes}
        out.print_json(json.dumps(body))
        return
    table = report_table(
        f"Sluice indexes on {deployment}",
        ("index", "collection", "embedding model", "points", "documents", "storage", "a month"),
        right=("points", "documents", "storage", "a month"),
    )
    for alias, info in indexes.items():
        storage = info["storage"]
        table.add_row(
            alias,
            info["collection"],
            _model_on_backend(info),
            str(info["points"]),
            str(info["documents"]),
            f"{storage['bytes'] / 1024**2:.1f} MiB ({storage['versions']} versions)",
            f"{storage['monthly_cost']:.6f} {storage['currency']}",
        )
    out.print(table)
    for alias, info in indexes.items():
        _print_avgdl(alias, info)
    if prefect:
        out.print(prefect_hint(prefect), soft_wrap=True)
    for alias, info in indexes.items():
        if info.get("last_runs"):
            out.print(
                runs_table(f"Last ingest runs into '{alias}' (sluice runs)", info["last_runs"])
            )


def _print_avgdl(alias: str, info: dict[str, Any]) -> None:
    """A warning, with what to do, when BM25's recorded avgdl has drifted far enough from the
    chunks' mean now to cost ranking quality (index/bm25/stats.py); nothing otherwise: a drift
    within the tolerance needs no action (the figures are in `--json`)."""
    avgdl = info["bm25_avgdl"]
    if not avgdl or not avgdl["stale"]:
        return
    out.print(
        f"[yellow]warning:[/yellow] in '{alias}', chunks are {abs(avgdl['drift']):.0%} "
        f"{'shorter' if avgdl['drift'] < 0 else 'longer'} on average than the avgdl its "
        f"BM25 vectors were weighted with (bm25 avgdl: recorded {avgdl['recorded']:.1f}, "
        f"current {avgdl['current']:.1f}, {avgdl['sampled']} of {avgdl['points']} points "
        "sampled), which costs BM25 ranking (docs/retrieval-quality.md); "
        f"`sluice reembed --model {info['embedding_model']}` builds a new version with them "
        "re-weighted to the current mean",
        soft_wrap=True,
    )


def _manifest_summary(settings: Settings, index: str) -> dict[str, Any]:
    """Documents by status and the last runs, from the index's manifest (if it has one)."""
    from collections import Counter

    from composition.components import Components

    if not Components(settings).has_manifest(index):
        return {}

    manifest = Components(settings).manifest(index)
    try:
        by_status = Counter(r.status for r in manifest.all_documents())
    finally:
        manifest.close()
    return {"manifest": dict(by_status), "last_runs": run_history(settings, index, limit=5)}


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
    settings = load_settings(index)
    if not force and golden is None and settings.golden_set is None:
        console.print(
            "[red]re-embed failed:[/red] no golden set to compare the two versions on: set "
            "SLUICE_GOLDEN_SET or pass --golden (--force switches without a comparison)",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    use_prefect(settings)
    from flows.reembed_flow import reembed_flow

    # OSError: a model that cannot be found or loaded (hub errors are OSErrors too);
    # ValueError covers a missing or unusable golden set.
    errors = (*index_errors(), OSError, RuntimeError, ValueError)
    with exit_on("re-embed", *errors), progress_bars(not as_json):
        report = reembed_flow(model, force, str(golden) if golden else None, settings=settings)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        from rich.markdown import Markdown

        from pipelines.reembed_report import ReembedReport

        out.print(Markdown(ReembedReport.from_dict(report).to_markdown()))
    if report["outcome"] == "rejected":
        raise typer.Exit(3)


def _version_rows(settings: Settings) -> list[dict[str, Any]]:
    from composition.components import Components
    from index.contracts import IndexNotFoundError
    from index.versions import collection_name, versions_of

    parts = Components(settings)
    store = parts.store()
    manifest = parts.manifest()
    try:
        serving = store.resolve_alias(settings.index_name)
        records = manifest.versions()
        rows: list[dict[str, Any]] = []
        numbers = versions_of(store, settings.index_name)
        if not numbers:
            known = ", ".join(sorted(store.list_aliases())) or "none yet"
            raise IndexNotFoundError(
                f"index '{settings.index_name}' has no versions (indexes here: {known})"
            )
        for number in numbers:
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
                    "embedding_backend": spec.embedding_backend if spec else None,
                    "dimension": spec.dimension if spec else None,
                    "points": store.count(name),
                    "created_at": spec.created_at if spec else None,
                    "scores": record.scores if record else {},
                    "tuning": _tuning_summary(spec.tuning) if spec and spec.tuning else None,
                }
            )
        return rows
    finally:
        manifest.close()
        store.close()


def _tuning_summary(tuning: RetrievalTuning) -> dict[str, Any]:
    evidence = tuning.evidence
    return {
        "options": asdict(tuning.options),
        "tuned_at": tuning.tuned_at,
        "kept_defaults": evidence.get("kept_defaults"),
        "cv_gain_mean": evidence.get("cv_gain_mean"),
        "cv_gain_std": evidence.get("cv_gain_std"),
        "golden_set": evidence.get("golden_set"),
    }


def versions(
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The index's collection versions: model, dimension, points, created, state, eval scores."""
    settings = load_settings(index)
    with exit_on("versions", *index_errors()):
        rows = _version_rows(settings)
    if as_json:
        out.print_json(json.dumps({"index": settings.index_name, "versions": rows}))
        return
    columns = ("version", "state", "embedding model", "dim", "points", "created", "scores", "tuned")
    table = report_table(f"Versions of '{settings.index_name}'", columns)
    for row in rows:
        scores = "; ".join(
            f"{mode} " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k)
            for mode, metrics in row["scores"].items()
        )
        table.add_row(
            str(row["version"]),
            row["state"],
            _model_on_backend(row),
            str(row["dimension"]),
            str(row["points"]),
            str(row["created_at"]),
            scores,
            _describe_tuning(row["tuning"]),
        )
    out.print(table)


def _model_on_backend(row: dict[str, Any]) -> str:
    backend = row.get("embedding_backend")
    model = str(row["embedding_model"])
    return model if backend in (None, "torch") else f"{model} ({backend})"


def _describe_tuning(tuning: dict[str, Any] | None) -> str:
    if tuning is None:
        return "no (defaults)"
    from index.contracts import HybridOptions
    from pipelines.tuning import describe

    options = HybridOptions.from_metadata(tuning["options"])
    gain = f"cv gain {tuning['cv_gain_mean']:+.4f} ± {tuning['cv_gain_std']:.4f}"
    kept = "defaults kept" if tuning["kept_defaults"] else describe(options)
    return f"{kept}, blend {options.rerank_blend} ({gain}, {tuning['tuned_at']})"


def rollback(
    to: Annotated[
        int | None, typer.Option(help="Version number to serve (default: the previous one).")
    ] = None,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Point the index back at an older version, caught up with what was ingested since."""
    settings = load_settings(index)
    from flows.reembed_flow import run_rollback

    console.print("[dim]waiting for any ingest run into the index to finish…[/dim]")
    with exit_on("rollback", *index_errors(), OSError, ValueError):
        report = run_rollback(settings, to).to_dict()
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"'{report['index']}' now serves {report['serving']} ({report['embedding_model']}, "
        f"{report['points']} points; was {report['previous']}); caught up "
        f"{report['caught_up']['points']} points in {report['seconds']:.1f} s"
    )
