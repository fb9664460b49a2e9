"""The evaluation harness: BEIR loading, ranx scoring, and a real run on a SciFact slice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composition.components import Components
from pipelines.beir import as_parsed_documents, doc_id_from_uri, document_uri, load_beir
from pipelines.evaluation import score_run
from tests.conftest import SHARED

SCIFACT = SHARED / "data" / "beir" / "scifact"
needs_scifact = pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared BEIR data is absent")


def _tiny_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d/1", "title": "Pumps", "text": "impellers"},
        {"_id": "d2", "title": "", "text": "x"},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    queries = [{"_id": "q1", "text": "pump"}, {"_id": "q2", "text": "unjudged"}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td/1\t1\n")
    return folder


def test_only_judged_queries_are_test_queries(tmp_path: Path) -> None:
    dataset = load_beir(_tiny_beir(tmp_path / "tiny"))
    assert dataset.queries == {"q1": "pump"}
    assert dataset.qrels == {"q1": {"d/1": 1}}
    documents = as_parsed_documents(dataset)
    assert [d.elements[0].category for d in documents] == ["Title", "NarrativeText"]
    assert doc_id_from_uri(document_uri("tiny", "d/1")) == "d/1"


def test_a_folder_that_is_not_beir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl is missing"):
        load_beir(tmp_path)


def test_scores_match_hand_computed_values() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 2.0, "x": 1.0}, "q2": {"x": 2.0, "b": 1.0}}
    scores = score_run(qrels, run)
    assert scores["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert scores["recall@100"] == pytest.approx(1.0)
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / 1.5849625) / 2, rel=1e-4)


@needs_scifact
def test_harness_on_a_scifact_slice_beats_a_broken_ranking(tmp_path: Path) -> None:
    from config.settings import Settings
    from flows.evaluate_flow import evaluate_flow, run_evaluation
    from pipelines.evaluation import retrieve_run

    settings = Settings(data_dir=tmp_path / "data")
    report = run_evaluation(SCIFACT, settings, max_docs=40, out_dir=tmp_path / "reports")
    assert set(report.modes) == {"bm25", "dense", "hybrid"}
    for scores in report.modes.values():
        assert 0.3 < scores["ndcg@10"] <= 1 and 0 < scores["mrr@10"] <= 1
    assert {p.suffix for p in (tmp_path / "reports").iterdir()} == {".json", ".md", ".png"}

    parts = Components(settings)
    embedder, store = parts.embedder(), parts.store()
    try:
        dataset = load_beir(SCIFACT, max_docs=40)
        searcher = parts.searcher(store, lambda _: embedder)
        run = retrieve_run(searcher, "eval-scifact", dataset.queries, "hybrid")
    finally:
        store.close()
    broken = {q: {d: -s for d, s in ranking.items()} for q, ranking in run.items()}
    good, bad = score_run(dataset.qrels, run), score_run(dataset.qrels, broken)
    assert good["ndcg@10"] == pytest.approx(report.modes["hybrid"]["ndcg@10"], abs=0.02)
    assert good["ndcg@10"] > bad["ndcg@10"] + 0.3

    again = run_evaluation(SCIFACT, settings, ("bm25",), max_docs=40, out_dir=tmp_path / "r2")
    assert again.embedded == 0 and again.from_cache == report.chunks

    shaped = run_evaluation(
        SCIFACT,
        settings,
        ("hybrid", "hybrid+group_by", "hybrid+mmr0", "hybrid+mmr0.9"),
        max_docs=40,
        out_dir=tmp_path / "r3",
    ).modes
    # Grouped, documents come in the order of their best chunk: the harness's own ranking.
    for name in ("hybrid+group_by", "hybrid+mmr0"):
        assert shaped[name]["ndcg@10"] == pytest.approx(shaped["hybrid"]["ndcg@10"]), name
    assert shaped["hybrid+mmr0.9"]["ndcg@10"] != shaped["hybrid"]["ndcg@10"]
    assert shaped["hybrid+mmr0.9"]["distinct_docs@10"] >= shaped["hybrid"]["distinct_docs@10"]
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        evaluate_flow.fn(str(SCIFACT), ["hybrid+mmr2"], settings=settings)
