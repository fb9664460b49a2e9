"""`sluice tune`: cross-validation that cannot simply memorise the golden set, the choice recorded
in the collection version, and `/retrieve` answering with it unless a request says otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from composition.components import Components
from config.settings import Settings
from flows.tune_flow import run_tuning
from index.contracts import HybridOptions
from pipelines.beir import load_beir
from pipelines.evaluation import build_eval_index, eval_alias
from pipelines.tuning import choose, cross_validate, folds_of
from retrieval_api.app import create_app
from tests.test_reembed import QUESTIONS, TOPICS

DEFAULT = HybridOptions("minmax", 60, (1.0, 1.0), 50)


def _noise_table(
    rng: np.random.Generator, configs: int, queries: int, true_gain: float
) -> dict[HybridOptions, np.ndarray]:
    """Per-query nDCG of the default and of `configs` alternatives: noise around the default,
    the last alternative `true_gain` better on every query."""
    base = rng.uniform(0.2, 0.8, queries)
    table = {DEFAULT: base}
    for i in range(configs):
        gain = true_gain if i == configs - 1 else 0.0
        table[HybridOptions("rrf", i + 1, (1.0, 1.0), 50)] = np.clip(
            base + gain + rng.normal(0, 0.15, queries), 0, 1
        )
    return table


def test_cross_validation_does_not_credit_a_choice_that_only_fits_the_golden_set() -> None:
    rng = np.random.default_rng(7)
    table = _noise_table(rng, configs=60, queries=40, true_gain=0.0)
    everything = np.arange(40)
    in_sample = choose(table, everything, DEFAULT)
    optimism = table[in_sample].mean() - table[DEFAULT].mean()
    gains, _ = cross_validate(table, DEFAULT, folds_of([str(i) for i in range(40)], 5, 0))
    assert optimism > 0.02  # picking the best of 60 noisy alternatives looks like a gain ...
    assert np.mean(gains) < optimism / 2  # ... that held-out folds do not confirm


def test_cross_validation_finds_a_real_gain() -> None:
    rng = np.random.default_rng(3)
    table = _noise_table(rng, configs=10, queries=60, true_gain=0.1)
    gains, choices = cross_validate(table, DEFAULT, folds_of([str(i) for i in range(60)], 5, 0))
    better = HybridOptions("rrf", 10, (1.0, 1.0), 50)
    assert choices == [better] * 5
    assert np.mean(gains) == pytest.approx(0.1, abs=0.04)


def test_ties_keep_the_default() -> None:
    same = np.full(10, 0.5)
    table = {HybridOptions("rrf", 1, (1.0, 1.0), 50): same, DEFAULT: same.copy()}
    assert choose(table, np.arange(10), DEFAULT) == DEFAULT


@pytest.fixture
def paraphrases(tmp_path: Path, embedder) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """Questions that share almost no words with their documents, and defaults that lean on
    BM25: a golden set on which tuning has something real to find. Indexed in one fixed order
    (not by a parallel ingest), so near-ties between configurations fall the same way each run."""
    folder = tmp_path / "paraphrases"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": name, "title": title, "text": text}) + "\n"
            for name, (title, text) in TOPICS.items()
        )
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": n, "text": q}) + "\n" for n, q in QUESTIONS.items())
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{n}\t{n}\t1\n" for n in QUESTIONS)
    )
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        "".join(json.dumps({"query": q, "relevant": [n]}) + "\n" for n, q in QUESTIONS.items())
    )
    dataset = load_beir(folder)
    settings = Settings(
        data_dir=tmp_path / "data",
        index_name=eval_alias(dataset.name),
        golden_set=golden,
        fusion_method="minmax",
        fusion_weights=(0.1, 2.0),
        candidate_pool=5,
    )
    parts = Components(settings)
    store = parts.store()
    try:
        build_eval_index(
            dataset, parts.chunker(embedder), embedder, store, parts.bm25_params(), None
        )
    finally:
        store.close()
    yield settings


def test_tune_records_its_choice_and_retrieve_uses_it_unless_asked_otherwise(
    paraphrases: Settings,
) -> None:
    settings = paraphrases
    dry = run_tuning(settings, folds=3, record=False)
    store = Components(settings).store()
    try:
        assert store.collection_spec(f"{settings.index_name}__v1").tuning is None  # type: ignore[union-attr]
    finally:
        store.close()

    report = run_tuning(settings, folds=3)
    assert report.chosen == dry.chosen and not report.kept_defaults
    assert report.cv_gain_mean > 0.05 and report.chosen_score > report.default_score
    assert report.chosen["weights"] != [0.1, 2.0] or report.chosen["method"] != "minmax"
    tuned = HybridOptions.from_metadata(report.chosen)
    assert (settings.data_dir / "tune-reports" / f"{report.collection}.md").is_file()

    with TestClient(create_app(settings), base_url="http://localhost") as client:
        answer = client.post("/retrieve", json={"query": QUESTIONS["bees.md"]}).json()
        assert answer["index"]["tuned_at"] and answer["options"] == {
            "method": tuned.method,
            "rrf_k": tuned.rrf_k,
            "weights": list(tuned.weights or ()),
            "candidate_pool": tuned.candidate_pool,
            "rerank_blend": settings.rerank_blend,
        }
        asked = client.post(
            "/retrieve",
            json={"query": "bees", "fusion": {"method": "dbsf"}, "candidate_pool": 7, "top_k": 5},
        ).json()["options"]
        assert asked["method"] == "dbsf" and asked["candidate_pool"] == 7
        shallow = {"query": "bees", "candidate_pool": 3, "top_k": 5}
        # A pool shallower than the page would cut it short: the pool used is at least top_k.
        assert client.post("/retrieve", json=shallow).json()["options"]["candidate_pool"] == 5
        assert asked["weights"] == list(tuned.weights or ())


def test_cli_tune_versions_and_a_missing_golden_set(
    paraphrases: Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app

    settings = paraphrases
    monkeypatch.setenv("SLUICE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SLUICE_FUSION_WEIGHTS", "[0.1, 2.0]")
    monkeypatch.setenv("SLUICE_CANDIDATE_POOL", "5")
    runner = CliRunner()

    nothing = runner.invoke(app, ["tune"])
    assert nothing.exit_code == 2 and "no golden set" in nothing.output, nothing.output

    golden = ["--golden", str(settings.golden_set), "--index", settings.index_name]
    tuned = runner.invoke(app, ["tune", *golden, "--folds", "3"])
    assert tuned.exit_code == 0, tuned.output
    assert "Cross-validated gain over the defaults: +" in tuned.stdout

    listed = runner.invoke(app, ["versions", "--json", "--index", settings.index_name])
    row = json.loads(listed.stdout)["versions"][0]
    assert row["tuning"]["kept_defaults"] is False and row["tuning"]["cv_gain_mean"] > 0
    table = runner.invoke(app, ["versions", "--index", settings.index_name]).stdout
    assert "tuned" in table and "gain" in table


def test_a_gain_the_folds_do_not_agree_on_keeps_the_defaults() -> None:
    from pipelines.tuning import clearly_positive

    assert not clearly_positive([0.0075, -0.0039, 0.0078, -0.0102, -0.0012])  # mean ~0
    assert not clearly_positive([0.0, 0.0, 0.0])
    assert clearly_positive([0.03, 0.05, 0.04])


def test_with_a_reranker_the_blend_is_cross_validated_too(paraphrases: Settings) -> None:
    from index.models.reranker import CrossEncoderReranker
    from pipelines.evaluation import load_golden_set
    from pipelines.tuning import BLENDS, tune

    reranker = CrossEncoderReranker(
        "sentence-transformers/all-MiniLM-L6-v2", device="cpu", budget_ms=600_000
    )
    settings = paraphrases
    parts = Components(settings)
    store = parts.store()
    try:
        searcher = parts.searcher(store, reranker=reranker)
        dataset = load_golden_set(settings.golden_set)  # type: ignore[arg-type]
        report, tuning = tune(searcher, settings.index_name, dataset, 3, 0, reranker)
    finally:
        store.close()
    assert report.rerank["blend"] in {*BLENDS, settings.rerank_blend}
    assert report.rerank["default_blend"] == settings.rerank_blend
    assert tuning.options.rerank_blend == report.rerank["blend"]
    assert set(report.rerank) >= {"score", "cv_gain_mean", "cv_gain_std"}
    assert "Rerank blend:" in report.to_markdown()
