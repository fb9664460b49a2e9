"""The Prefect `reembed` flow and the settings-level entry points of re-embed and rollback.

The work is in `pipelines/reembed.py` and `pipelines/rollback.py`; here `Settings` become their
parts through the composition root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from composition.components import Components
from config.settings import Settings
from flows.artifacts import artifact_key
from flows.replay_flow import logged_for
from index.contracts import VectorStore
from pipelines.evaluation import load_golden_set
from pipelines.reembed import SWAP_WAIT_S, reembed
from pipelines.reembed_report import ReembedReport
from pipelines.rollback import RollbackReport, rollback


def run_reembed(
    settings: Settings,
    model: str,
    force: bool = False,
    golden: Path | None = None,
    store: VectorStore | None = None,
    wait_for_lock_s: float = SWAP_WAIT_S,
) -> ReembedReport:
    """Re-embeds the configured index with `model`, gated on `golden` (default: the configured
    golden set) and on a replay of the queries in the query log. `store`: one the caller holds
    open (a process that also serves)."""
    parts = Components(settings)
    golden = golden or settings.golden_set
    dataset = load_golden_set(golden) if golden is not None else None
    logged = logged_for(settings, settings.query_log_dir)
    with parts.versioned_index(store) as index:
        return reembed(
            index,
            parts.embedder(model),
            parts.gate_policy(),
            dataset,
            parts.reembed_lock(),
            settings.keep_versions,
            force,
            wait_for_lock_s,
            parts.cost_rates(),
            logged,
            settings.gate_replay_min_overlap,
        )


def run_rollback(
    settings: Settings,
    to: int | None = None,
    store: VectorStore | None = None,
    wait_for_lock_s: float = SWAP_WAIT_S,
) -> RollbackReport:
    """Points the configured index back at version `to` (default: the previous one)."""
    with Components(settings).versioned_index(store) as index:
        return rollback(index, to, wait_for_lock_s)


@flow(name="reembed", log_prints=True)
def reembed_flow(
    model: str,
    force: bool = False,
    golden: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Re-embeds the index with `model`; switches to it if the golden-set gate passes."""
    settings = settings or Settings()
    report = run_reembed(settings, model, force, Path(golden) if golden else None)
    create_markdown_artifact(markdown=report.to_markdown(), key=artifact_key("reembed", settings))
    print(report.to_markdown())
    return report.to_dict()
