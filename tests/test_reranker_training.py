"""Mining pairs from our own first stage and fine-tuning a cross-encoder, end to end but tiny."""

from __future__ import annotations

import json
from pathlib import Path

from composition.components import Components
from config.settings import Settings
from index.contracts import ScoredPoint
from index.models.reranker import CrossEncoderReranker, uses_only_known_modules
from index.search.searcher import IndexSearcher
from pipelines.beir import load_beir
from pipelines.evaluation import build_eval_index
from pipelines.reranker_training import (
    POSITIVE_LABEL,
    new_cross_encoder,
    query_lists,
    train_cross_encoder,
)
from pipelines.training_pairs import TrainingPair, listwise_tuples, mine_pairs

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
DOCS = {
    "pump": ("Pumps", "A centrifugal pump moves water with an impeller."),
    "solar": ("Solar", "Solar panels charge batteries during the day."),
    "garden": ("Garden", "Tomatoes need water every morning in summer."),
    "pipes": ("Pipes", "Frozen pipes burst when water expands in winter."),
    "roof": ("Roof", "Rain from the roof fills the water tank."),
    "wind": ("Wind", "A wind turbine turns a generator to make power."),
}
QUERIES = {
    "q1": ("what moves water in a pump", "pump"),
    "q2": ("charging batteries", "solar"),
    "q3": ("why pipes burst", "pipes"),
}


def _beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": t, "text": x}) for k, (t, x) in DOCS.items())
    )
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, (t, _) in QUERIES.items())
    )
    rows = "".join(f"{q}\t{d}\t1\n" for q, (_, d) in QUERIES.items())
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_mined_pairs_and_a_trained_model_that_reranks(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    dataset = load_beir(_beir(tmp_path / "tiny"), split="train")
    settings = Settings(data_dir=tmp_path / "data")
    parts = Components(settings)
    store = parts.store()
    try:
        alias, _, _ = build_eval_index(
            dataset,
            Components(settings).chunker(embedder),
            embedder,
            store,
            Components(settings).bm25_params(),
            None,
        )
        pairs = mine_pairs(dataset, IndexSearcher(store, lambda m: embedder), alias, 2, depth=6)
    finally:
        store.close()
    positives = [p for p in pairs if p.label == 1.0]
    assert len(positives) == 3 and len(pairs) == 9
    assert {p.passage.split("\n")[0] for p in positives} == {"Pumps", "Solar", "Pipes"}

    classifier_dir = train_cross_encoder(
        pairs, tmp_path / "bce", batch_size=4, max_length=64, loss_name="bce", head="classifier"
    )
    assert (classifier_dir / "config.json").is_file()
    model_dir = train_cross_encoder(pairs, tmp_path / "segment", batch_size=2, max_length=64)
    assert (model_dir / "model.safetensors").is_file()
    assert uses_only_known_modules(model_dir) and not uses_only_known_modules(classifier_dir)
    for saved in (model_dir, classifier_dir):
        reranker = CrossEncoderReranker(str(saved), device="cpu")
        reranked = reranker.rerank(
            "what moves water in a pump",
            [ScoredPoint("a", 1.0, {"text": "Pumps"}), ScoredPoint("b", 0.5, {"text": "Wind"})],
        )
        assert len(reranked) == 2


def test_the_segment_head_ranks_before_any_training() -> None:
    model = new_cross_encoder(MINILM, 128, "segment")
    on_topic, off_topic = model.predict(
        [
            ("why do frozen pipes burst", "Water expands as it freezes and splits the pipe."),
            ("why do frozen pipes burst", "Solar panels charge batteries during the day."),
        ]
    )
    assert on_topic > off_topic  # raw scaled cosines: no sigmoid squashing them into ties
    assert 0 < on_topic - off_topic < 40


def test_only_sluice_module_classes_are_trusted(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil.Module"}])
    )
    assert not uses_only_known_modules(tmp_path)
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"type": "sentence_transformers.base.modules.Transformer"},
                {"type": "index.models.segment_similarity.SegmentSimilarity"},
            ]
        )
    )
    assert uses_only_known_modules(tmp_path)


def test_a_reranker_trained_before_index_was_split_still_loads_its_head(tmp_path: Path) -> None:
    """Its modules.json names the head at its old module; sentence-transformers imports that."""
    import importlib

    from index.models.segment_similarity import SegmentSimilarity

    old = "index.segment_similarity.SegmentSimilarity"
    (tmp_path / "modules.json").write_text(json.dumps([{"type": old}]))
    assert uses_only_known_modules(tmp_path)
    module, _, name = old.rpartition(".")
    assert getattr(importlib.import_module(module), name) is SegmentSimilarity


def test_listwise_tuples_give_each_positive_its_querys_negatives() -> None:
    pairs = [
        TrainingPair("q1", "p1", 1.0),
        TrainingPair("q1", "n1", 0.0),
        TrainingPair("q1", "n2", 0.0),
        TrainingPair("q2", "p2", 1.0),
        TrainingPair("q2", "m1", 0.0),
        TrainingPair("q3", "p3", 1.0),  # no negatives: left out
    ]
    assert listwise_tuples(pairs) == {
        "query": ["q1", "q2"],
        "positive": ["p1", "p2"],
        "negative_1": ["n1", "m1"],
        "negative_2": ["n2", "m1"],
    }


def test_query_lists_hold_each_querys_passages_with_near_one_hot_labels() -> None:
    pairs = [
        TrainingPair("q1", "p1", 1.0),
        TrainingPair("q1", "n1", 0.0),
        TrainingPair("q2", "p2", 1.0),  # no negative: nothing to rank against
        TrainingPair("q3", "n3", 0.0),  # no positive
    ]
    assert query_lists(pairs) == {
        "query": ["q1"],
        "docs": [["p1", "n1"]],
        "labels": [[POSITIVE_LABEL, 0.0]],
    }
