"""The Prefect `tune` flow: choose an index's hybrid options on its golden set, record them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from composition.components import Components
from config.settings import Settings
from flows.artifacts import artifact_key
from pipelines.evaluation import load_golden_set
from pipelines.tuning import TuningReport, tune


def run_tuning(
    settings: Settings,
    golden: Path | None = None,
    folds: int = 5,
    seed: int = 0,
    record: bool = True,
) -> TuningReport:
    """Plain-Python tuning of the serving version; with `record`, stores the choice in it."""
    path = golden or settings.golden_set
    if path is None:
        raise ValueError("no golden set to tune on: set SLUICE_GOLDEN_SET or pass --golden")
    dataset = load_golden_set(path)
    parts = Components(settings)
    store = parts.store()
    try:
        searcher = parts.searcher(store)
        report, tuning = tune(searcher, settings.index_name, dataset, folds, seed, parts.reranker())
        if record:
            store.record_tuning(report.collection, tuning)
    finally:
        store.close()
    folder = settings.data_dir / "tune-reports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{report.collection}.json").write_text(json.dumps(report.to_dict(), indent=2))
    (folder / f"{report.collection}.md").write_text(report.to_markdown() + "\n")
    return report


@flow(name="tune", log_prints=True)
def tune_flow(
    golden: str | None = None,
    folds: int = 5,
    seed: int = 0,
    record: bool = True,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Cross-validated fusion, candidate pool and rerank blend for the index's serving version."""
    settings = settings or Settings()
    report = run_tuning(settings, Path(golden) if golden else None, folds, seed, record)
    create_markdown_artifact(markdown=report.to_markdown(), key=artifact_key("tune", settings))
    return report.to_dict()
