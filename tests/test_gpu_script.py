"""bench/gpu.py, the script prepared for a GPU machine, runs end to end on a CPU at tiny sizes and
writes every figure it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOPICS = [
    ("Pumps", "The impeller of a centrifugal pump wears and loses pressure."),
    ("Seals", "A mechanical seal leaks when its faces are scored."),
    ("Valves", "A check valve stops water flowing back into the pump."),
    ("Bearings", "Ball bearings fail from poor lubrication and heat."),
    ("Motors", "An induction motor turns the shaft of the pump."),
    ("Pipes", "Corrosion narrows old steel pipes over the years."),
    ("Filters", "A clogged filter starves the pump of water."),
    ("Tanks", "A pressure tank keeps the pump from cycling too often."),
]


def tiny_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": t, "text": x} for i, (t, x) in enumerate(TOPICS)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    queries = [
        {"_id": f"q{i}", "text": f"what about {t.lower()}"} for i, (t, _) in enumerate(TOPICS)
    ]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    header = "query-id\tcorpus-id\tscore\n"
    (folder / "qrels" / "train.tsv").write_text(
        header + "".join(f"q{i}\td{i}\t1\n" for i in range(5))
    )
    (folder / "qrels" / "test.tsv").write_text(
        header + "".join(f"q{i}\td{i}\t1\n" for i in range(5, 8))
    )
    return folder


# A benchmark, not the product: the full run (before an issue closes) checks it still runs, so
# that a GPU machine's short time is not spent on a broken script.
@pytest.mark.full
def test_the_gpu_script_runs_on_a_cpu_at_tiny_sizes(tmp_path: Path, prefect_server: None) -> None:
    from prefect.settings import get_current_settings

    dataset = tiny_beir(tmp_path / "tiny")
    out = tmp_path / "gpu.json"
    # Its commands record their runs on the session's Prefect server, not one started each.
    env = dict(os.environ, PREFECT_API_URL=str(get_current_settings().api.url))
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), str(dataset), "--tiny", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and results["tiny"]
    assert [row["batch_size"] for row in results["embedding"]] == [8, 16]
    assert all(
        row["chunks_per_s"] > 0 and row["padding_ratio"] >= 1 for row in results["embedding"]
    )
    for key in ("rerank_untrained", "rerank_trained"):
        assert results[key]["p50_ms"] > 0 and results[key]["queries"] == 3
    assert results["training"]["pairs"] > 0
    assert 0 <= results["eval_hybrid"]["hybrid"]["ndcg@10"] <= 1
    assert "hybrid" in results["eval_hybrid_rerank"]
