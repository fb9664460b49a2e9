"""The rerank blend chosen on held-out feedback, as a user following docs/feedback.md would choose
it: `sluice tune` with the reranker trained from N feedback events, on the held-out part of what
those events labelled; then nDCG@10 on the measured queries with what it chose.

    .venv/bin/python bench/feedback_tune.py ../shared/data/beir/scifact --events 1000 \\
        --model .bench/feedback/scifact/reranker-01000

Reads a finished `bench/feedback_loop.py simulate` and `train`. The learner sees the oldest N
answers with feedback (as `relabel` does); the golden set is its held-out split (queries the
reranker was not trained on), written to OUT/golden-N-heldout.jsonl; tuning is `sluice tune`'s
own (`flows.tune_flow.run_tuning`, 5-fold, not recorded). The measured queries are then searched
with the reranker for real (no replayed scores), at the tuned options and at the defaults. It also
prints the verdict of `sluice train-reranker --from-feedback`'s gate on the same held-out set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--model", type=Path, required=True, help="the trained reranker")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from feedback_loop import _settings, splits

    from composition.components import Components
    from flows.tune_flow import run_tuning
    from index.contracts import HybridOptions
    from pipelines.evaluation import evaluate_modes
    from pipelines.feedback_labels import golden_entries, learn_labels, write_golden
    from sluice.cli.feedback_commands import gate_reranker, load_feedback

    out = args.out or Path(".bench/feedback") / args.dataset.name
    train, test = splits(args.dataset)
    found, _ = load_feedback(_settings(out, train.name), None)  # newest first
    labels = learn_labels(list(reversed(found))[: args.events])
    golden = write_golden(
        golden_entries(labels, "heldout"), out / f"golden-{args.events:05d}-heldout.jsonl"
    )
    settings = _settings(out, test.name).model_copy(
        update={"reranker_model": str(args.model.resolve()), "rerank_budget_ms": 3_600_000.0}
    )
    started = time.perf_counter()
    report = run_tuning(settings, golden, record=False)
    tuned_s = time.perf_counter() - started
    chosen = HybridOptions(**report.chosen)
    parts = Components(settings)
    store = parts.store()
    rows = {}
    try:
        searcher = parts.searcher(store)
        for name, options in (("defaults", parts.hybrid_defaults()), ("tuned", chosen)):
            modes = evaluate_modes(
                test, searcher, settings.index_name, ["hybrid", "hybrid+rerank"], options
            )
            rows[name] = {mode: round(scores["ndcg@10"], 4) for mode, scores in modes.items()}
    finally:
        store.close()
    gate = gate_reranker(_settings(out, test.name), args.model.resolve(), golden)
    summary = {
        "events": args.events,
        "model": str(args.model),
        "golden_heldout_queries": report.queries,
        "tuning_seconds": round(tuned_s),
        "chosen": report.chosen,
        "kept_fusion_defaults": report.kept_defaults,
        "rerank": report.rerank,
        "measured_queries": len(test.queries),
        "ndcg@10": rows,
        "gate": gate,
    }
    (out / f"tuned-{args.events:05d}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
