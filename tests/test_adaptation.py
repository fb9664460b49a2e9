"""`sluice adapt`: pseudo-queries from the corpus alone (a document's title, else one of a chunk's
sentences), BM25 hard negatives from other documents, and the model through the re-embed gate."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from composition.components import Components
from config.settings import Settings
from pipelines.adaptation import SKIP_TOP, adaptation_pairs, pseudo_query
from tests.conftest import ingest_folder

TOPICS = {
    "pumps.md": ("Centrifugal pump maintenance schedule", "impeller seal bearing pump"),
    "valves.md": ("Gate valve packing replacement guide", "valve stem packing gland"),
    "boilers.md": ("Boiler water treatment basics", "boiler scale feedwater chemistry"),
    "motors.md": ("Induction motor bearing lubrication", "motor bearing grease interval"),
    "fans.md": ("Cooling tower fan vibration checks", "fan blade balance vibration"),
    "pipes.md": ("Pipe corrosion inspection methods", "pipe wall thickness corrosion"),
}


def test_a_title_is_the_query_for_its_body_else_a_sentence_for_the_rest() -> None:
    rng = random.Random(1)
    titled = {"title": "Centrifugal pump maintenance", "doc_id": "file:///d/pumps.md"}
    body = "Check the impeller every month. Replace the seal when it weeps. Grease the bearings."
    made = pseudo_query({**titled, "text": f"Centrifugal pump maintenance {body}"}, rng)
    assert made is not None and (made.recipe, made.query, made.positive) == (
        "title",
        "Centrifugal pump maintenance",
        body,
    )
    named = {"title": "pumps", "doc_id": "file:///d/pumps.md", "text": body}
    sentences = [s.strip() for s in body.replace(". ", ".|").split("|")]
    for seed in range(20):
        ict = pseudo_query(named, random.Random(seed))
        assert ict is not None and ict.recipe == "ict" and ict.query in sentences
        rest = [s for s in sentences if s != ict.query]
        assert ict.positive in (" ".join(rest), " ".join(sentences))
    assert (
        pseudo_query({"title": "pumps", "doc_id": "x/pumps.md", "text": "Too short."}, rng) is None
    )


@pytest.fixture
def corpus(tmp_path: Path, embedder: object) -> Settings:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, (title, words) in TOPICS.items():
        sentences = " ".join(f"The {w} needs care in every plant we run." for w in words.split())
        (folder / name).write_text(f"# {title}\n\n{sentences} Inspect the {words} weekly.\n")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        "".join(
            json.dumps({"query": words, "relevant": [name]}) + "\n"
            for name, (_, words) in TOPICS.items()
        )
    )
    settings = Settings(data_dir=tmp_path / "data", golden_set=golden)
    ingest_folder(settings, folder, embedder, source_name="docs")
    return settings


def test_negatives_come_from_other_documents_below_the_top(corpus: Settings) -> None:
    parts = Components(corpus)
    store = parts.store()
    try:
        collection = store.resolve_alias(corpus.index_name)
        assert collection is not None
        payloads = [p.payload for page in store.read_points(collection) for p in page]
        searcher = parts.searcher(store)
        pairs, made = adaptation_pairs(payloads, searcher, collection, max_queries=50)
        assert made["title"] + made["ict"] == len(pairs) // 2 > 0
        for query in {p.query for p in pairs}:
            positive = next(p.passage for p in pairs if p.query == query and p.label)
            negative = next(p.passage for p in pairs if p.query == query and not p.label)
            assert positive != negative
            hits = searcher.search(collection, query, "bm25", limit=15).result.hits
            source = next(h for h in hits if positive in str(h.payload["text"]))
            others = [h for h in hits if h.payload["doc_id"] != source.payload["doc_id"]]
            assert negative in [str(h.payload["text"]) for h in others[SKIP_TOP:]]
    finally:
        store.close()


def test_adapt_trains_on_the_corpus_and_re_embeds_through_the_gate(
    corpus: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app

    monkeypatch.setenv("SLUICE_DATA_DIR", str(corpus.data_dir))
    monkeypatch.setenv("SLUICE_GOLDEN_SET", str(corpus.golden_set))
    output = tmp_path / "adapted"
    arguments = ["adapt", "--out", str(output), "--batch-size", "4", "--json"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code in (0, 3), result.output  # 3: the gate kept the old version
    report = json.loads(result.stdout)
    assert report["pseudo_queries"]["title"] >= 1 and (output / "modules.json").is_file()
    gate = report["reembed"]
    assert gate["outcome"] in ("switched", "rejected") and gate["gate"]["queries"] == len(TOPICS)
