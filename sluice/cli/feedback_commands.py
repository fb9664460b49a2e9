"""`sluice golden --from-feedback`, and the feedback behind `train-reranker --from-feedback` and
`train-embedder --from-feedback`: what users did with answers, as labels (docs/feedback.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from config.settings import Settings
from sluice.cli.common import IndexOption, console, exit_on, load_settings, out
from sluice.cli.cost_commands import parse_since

if TYPE_CHECKING:
    from pipelines.feedback_labels import Impression, Labels, Split
    from pipelines.training_pairs import TrainingPair

SinceOption = Annotated[
    str | None,
    typer.Option(help="Only feedback from this span or date on: 30d, 24h, 2026-11-01."),
]
MINED_DEPTH = 30
"""How deep Sluice's own ranking is read for negatives past what users were shown."""
_ANSWER_COLUMNS = ("request_id", "key_id", "index", "query", "chunk_ids", "doc_ids")


def load_feedback(settings: Settings, since: str | None) -> tuple[list[Impression], Labels]:
    """The index's answers that got feedback, and what they say (the click model fitted on
    them); feedback still buffered in a running API (`SLUICE_QUERY_LOG_FLUSH_S`) is not seen."""
    from index.feedback import FEEDBACK_SCHEMA
    from index.query_log import newest_first, read_query_log
    from pipelines.feedback_labels import impressions, learn_labels

    start = datetime.fromtimestamp(parse_since(since), UTC) if since else None
    feedback = read_query_log(settings.feedback_dir, FEEDBACK_SCHEMA).to_pylist()
    if not feedback:
        raise ValueError(
            f"no feedback in {settings.feedback_dir}: POST /feedback sends it (docs/feedback.md)"
        )
    answers = newest_first(settings.query_log_dir, (*_ANSWER_COLUMNS, "explored_swap"))
    found = impressions(answers, feedback, start, settings.index_name)
    if not found:
        raise ValueError(
            "no answer in the query log has feedback"
            + (f" since {since}" if since else "")
            + f" for index {settings.index_name} (answers kept without their text cannot be used)"
        )
    return found, learn_labels(found)


def describe_noise(labels: Labels) -> str:
    noise = labels.noise
    return (
        f"users click {noise.relevant:.0%} of the relevant hits they look at and "
        f"{noise.other:.0%} of the others; a hit ranked first is relevant {noise.prior:.0%} of "
        f"the time, one ranked tenth {noise.prior_at(10):.0%}"
    )


def golden(
    from_feedback: Annotated[
        bool, typer.Option("--from-feedback", help="Build it from /feedback (required).")
    ] = False,
    since: SinceOption = None,
    output: Annotated[Path, typer.Option("--out", help="Folder for the two parts.")] = Path(
        "golden"
    ),
    threshold: Annotated[
        float,
        typer.Option(min=0.0, help="Position-corrected click rate that makes a hit relevant."),
    ] = 0.5,
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Write a golden set from what users clicked and marked: OUT/train.jsonl (tune on it, train
    on it) and OUT/heldout.jsonl (gate on it: no model is trained on these queries).

    Clicks are corrected for position bias (a position-based click model, docs/feedback.md)."""
    if not from_feedback:
        console.print("[red]golden failed:[/red] say where it comes from: --from-feedback")
        raise typer.Exit(2)
    settings = load_settings(index)
    from pipelines.feedback_labels import golden_entries, write_golden

    with exit_on("golden", ValueError):
        found, labels = load_feedback(settings, since)
    model = labels.model
    report: dict[str, Any] = {
        "answers": len(found),
        "queries": len(labels.queries),
        "click_model": model.describe(),
        "eta": model.eta,
        "eta_measured": model.measured,
        "click_noise": vars(labels.noise),
    }
    for split in ("train", "heldout"):
        entries = golden_entries(labels, split, threshold)
        path = write_golden(entries, output / f"{split}.jsonl")
        report[split] = {"path": str(path), "queries": len(entries)}
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"{report['answers']} answers with feedback, {report['queries']} distinct queries; "
        f"{model.describe()}; {describe_noise(labels)}"
    )
    out.print(f"train:   {report['train']['queries']} queries → {report['train']['path']}")
    out.print(f"heldout: {report['heldout']['queries']} queries → {report['heldout']['path']}")
    out.print(
        f"next: sluice tune --golden {report['train']['path']}; "
        f"gate a re-embed on it: sluice reembed --golden {report['heldout']['path']}"
    )


def feedback_training_pairs(
    settings: Settings, since: str | None, negatives: int
) -> tuple[list[TrainingPair], int, Path]:
    """Pairs from the training part of the feedback, with passages read from the serving
    collection; their query count; and the held-out golden set (written beside nothing else:
    into the data dir) for the gate."""
    from pipelines.feedback_labels import golden_entries, write_golden

    found, labels = load_feedback(settings, since)
    pairs = pairs_from_feedback(settings, found, labels, negatives)
    heldout = write_golden(
        golden_entries(labels, "heldout"), settings.data_dir / "feedback-golden" / "heldout.jsonl"
    )
    console.print(
        f"{len(found)} answers with feedback; {labels.model.describe()}; {describe_noise(labels)}"
    )
    return pairs, len({p.query for p in pairs}), heldout


def pairs_from_feedback(
    settings: Settings,
    found: list[Impression],
    labels: Labels,
    negatives: int,
    split: Split | None = "train",
) -> list[TrainingPair]:
    """`feedback_pairs` with passages and Sluice's own ranking read from the serving index."""
    from chunking.types import stored_indexed_text
    from composition.components import Components
    from pipelines.feedback_labels import feedback_pairs

    parts = Components(settings)
    store = parts.store()
    try:
        collection = store.resolve_alias(settings.index_name)
        if collection is None:
            raise ValueError(f"index {settings.index_name} has no serving version")

        def passages(chunk_ids: list[str]) -> dict[str, str]:
            texts = {}
            for start in range(0, len(chunk_ids), 256):
                for point in store.fetch(collection, chunk_ids[start : start + 256]):
                    texts[point.id] = stored_indexed_text(point.payload)
            return texts

        searcher = parts.searcher(store)

        def ranking(query: str) -> list[tuple[str, str, str]]:
            hits = searcher.search(collection, query, "hybrid", limit=MINED_DEPTH).result.hits
            return [(h.id, str(h.payload["doc_id"]), stored_indexed_text(h.payload)) for h in hits]

        return feedback_pairs(found, labels, passages, negatives, split, ranking=ranking)
    finally:
        store.close()


def gate_reranker(settings: Settings, model: Path, heldout: Path) -> dict[str, Any]:
    """The held-out feedback queries searched on the serving index with the trained reranker,
    at the blend that suits it (`pipelines/reranker_gate.py`), and with what serves now (the
    configured reranker, else none): the same gate metric and tolerance as a re-embed."""
    from composition.components import Components
    from pipelines.evaluation import load_golden_set
    from pipelines.reranker_gate import judge_reranker

    dataset = load_golden_set(heldout)
    unbounded = {"rerank_budget_ms": 3_600_000.0}  # reranks get all the time they need here
    trial = Components(settings.model_copy(update={**unbounded, "reranker_model": str(model)}))
    now = Components(settings.model_copy(update=unbounded))
    trained = trial.reranker()
    assert trained is not None
    store = trial.store()
    try:
        searcher = trial.searcher(store)
        collection = store.resolve_alias(settings.index_name) or settings.index_name
        spec = store.collection_spec(collection)
        options = searcher.resolve(spec, None) if spec else searcher.defaults
        verdict = judge_reranker(
            searcher, settings.index_name, dataset, options, trained, now.reranker(),
            settings.gate_metric,
        )  # fmt: skip
    finally:
        store.close()
    tolerance = settings.gate_tolerance
    return {
        "metric": settings.gate_metric,
        "queries": len(dataset.queries),
        "serving": settings.reranker_model or "no reranker",
        "old": round(verdict.old, 4),
        "new": round(verdict.new, 4),
        "blend": verdict.blend,
        "serving_blend": verdict.serving_blend,
        "new_at_serving_blend": round(verdict.new_at_serving_blend, 4),
        "blend_cv_gain": round(verdict.cv_gain, 4),
        "tolerance": tolerance,
        "passed": verdict.new >= verdict.old - tolerance,
    }
