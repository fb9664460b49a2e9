"""The feedback loop end to end, as an operator runs it, on what simulated users left behind:
their requests and clicks (a finished `bench/feedback_loop.py simulate`), then `sluice golden
--from-feedback`, `sluice train-reranker --from-feedback` (training and its gate), the switch the
gate prints, and the rollback; the measured queries asked of `sluice serve` over HTTP before the
switch, after it and after the rollback.

    .venv/bin/python bench/feedback_end_to_end.py ../shared/data/beir/scifact

Every step is the CLI or the API as a user runs it, on a copy of the simulation's data dir (the
simulation's logs stay as they were). nDCG@10 is computed from the served answers as `sluice eval`
computes it (each document at its best chunk, `pipelines/evaluation.py`). The switch is the
settings the gate printed; the rollback is those settings as they were, and the answers after it
are compared with those before the switch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.access_overhead import serve

PORT = 8431


def _sluice(env: dict[str, str], *args: str) -> str:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *args], env=env, capture_output=True, text=True
    )
    print(f"$ sluice {' '.join(args)}  # {time.perf_counter() - started:.0f} s, {done.returncode}")
    print(done.stdout.rstrip(), flush=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout


def _ask(queries: dict[str, str], settings: dict[str, str], data_dir: Path) -> dict[str, Any]:
    """Each measured query asked of a `sluice serve` started with `settings`, one at a time."""
    from pipelines.beir import doc_id_from_uri
    from pipelines.evaluation import DEPTH, document_ranking

    server = serve(data_dir, PORT, "off", settings)  # ready: the reranker too has loaded
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    degraded = reranked = cached = 0
    blends: set[float] = set()
    try:
        with httpx.Client(timeout=120) as http:
            for query_id, text in queries.items():
                started = time.perf_counter()
                answer = http.post(
                    f"http://localhost:{PORT}/retrieve",
                    json={"query": text, "mode": "hybrid", "top_k": 2 * DEPTH},
                )
                latencies.append(1000 * (time.perf_counter() - started))
                answer.raise_for_status()
                body = answer.json()
                degraded += bool(body["degraded"])
                reranked += any(h["scores"].get("rerank") is not None for h in body["hits"])
                blends.add(body["options"]["rerank_blend"])
                cached += body["cache"] == "hit"
                rankings[query_id] = [doc_id_from_uri(h["uri"]) for h in body["hits"]]
    finally:
        server.terminate()
        server.wait(60)
    return {
        "run": {q: document_ranking(ids) for q, ids in rankings.items()},
        "rankings": rankings,
        "p50_ms": round(statistics.median(latencies), 1),
        "degraded": degraded,
        "reranked_answers": reranked,
        "cached_answers": cached,
        "blends": sorted(blends),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="the simulation's folder")
    args = parser.parse_args()

    from feedback_loop import RERANK_CANDIDATES, _settings, splits

    from pipelines.evaluation import score_run

    out = args.out or Path(".bench/feedback") / args.dataset.name
    train, test = splits(args.dataset)
    simulated = _settings(out, train.name)
    work = out / "end-to-end"
    shutil.rmtree(work, ignore_errors=True)
    data_dir = work / "data"
    shutil.copytree(simulated.data_dir, data_dir)
    serving = {
        "SLUICE_INDEX_NAME": simulated.index_name,
        "SLUICE_RERANK_CANDIDATES": str(RERANK_CANDIDATES),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_DATA_DIR": str(data_dir), "SLUICE_AUTH": "off", **serving}

    print("## What users did (the simulation's query log and feedback)")
    from sluice.cli.feedback_commands import load_feedback

    found, _ = load_feedback(simulated.model_copy(update={"data_dir": data_dir}), None)
    answers = pyarrow.dataset.dataset(data_dir / "query-log", partitioning="hive").count_rows()
    print(f"{answers} answers in the query log, {len(found)} of them with feedback\n")

    print("## Golden set from feedback")
    _sluice(env, "golden", "--from-feedback", "--out", str(work / "golden"))
    print("\n## Reranker from feedback, and its gate")
    report = json.loads(
        _sluice(env, "train-reranker", "--from-feedback", "--out", str(work / "reranker"), "--json")
    )
    gate = report["gate"]
    if not gate["passed"]:
        raise SystemExit("the gate refused the model: nothing to switch to")
    switch = {
        "SLUICE_RERANKER_MODEL": str((work / "reranker").resolve()),
        "SLUICE_RERANK_BLEND": str(gate.get("blend", 0.7)),
        "SLUICE_RERANK_DEFAULT": "true",
    }
    print(f"\n## Served: before, switched ({switch}), rolled back")
    phases = {}
    for phase, settings in (
        ("before", serving),
        ("switched", serving | switch),
        ("rolled back", serving),
    ):
        asked = _ask(test.queries, settings, data_dir)
        asked["ndcg@10"] = round(score_run(test.qrels, asked["run"])["ndcg@10"], 4)
        phases[phase] = asked
        print(
            f"{phase}: nDCG@10 {asked['ndcg@10']} on {len(test.queries)} queries, "
            f"p50 {asked['p50_ms']} ms, degraded {asked['degraded']}, "
            f"reranked {asked['reranked_answers']}, blend {asked['blends']}",
            flush=True,
        )
    same = sum(
        phases["before"]["rankings"][q][:10] == phases["rolled back"]["rankings"][q][:10]
        for q in test.queries
    )
    print(f"rolled back: top 10 as before the switch for {same} of {len(test.queries)} queries")
    summary = {
        "answers_with_feedback": len(found),
        "training": {k: v for k, v in report.items() if k != "gate"},
        "gate": gate,
        "switch": switch,
        "served": {
            p: {k: v for k, v in a.items() if k not in ("run", "rankings")}
            for p, a in phases.items()
        },
        "rolled_back_same_top10": same,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
