"""From feedback to labels: the click model measures position bias from swapped answers (and
says when it could not), clicks are weighted by it, explicit labels outvote clicks, and `sluice
golden --from-feedback` writes both parts of a golden set from what the API logged."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings
from pipelines.click_model import (
    MIN_EXPLORED,
    ClickNoise,
    Observation,
    fit_click_model,
    fit_click_noise,
    observations,
)
from pipelines.feedback_labels import (
    Impression,
    Labels,
    feedback_pairs,
    golden_entries,
    impressions,
    learn_labels,
    split_of,
)
from retrieval_api.keys import KeyStore
from tests.conftest import ingest_folder, send_click


def _simulated(
    eta: float, answers: int, share: float, seed: int
) -> list[tuple[list[Observation], bool]]:
    rng = random.Random(seed)
    attractive = [0.9 / (1 + 0.3 * j) for j in range(10)]  # the ranker's order, best first
    found = []
    for _ in range(answers):
        swap = rng.randrange(1, 10) if rng.random() < share else None
        shown = observations(10, swap, set())
        clicked = {
            o.position
            for o in shown
            if rng.random() < o.position**-eta * attractive[o.original_rank - 1]
        }
        found.append((observations(10, swap, clicked), swap is not None))
    return found


@pytest.mark.parametrize("eta", [0.5, 1.0, 1.6])
def test_the_click_model_measures_position_bias_from_swapped_answers(eta: float) -> None:
    model = fit_click_model(_simulated(eta, 6000, 0.3, seed=int(eta * 10)))
    assert model.measured
    assert abs(model.eta - eta) < 0.2, model


def test_without_swapped_answers_position_bias_is_assumed_and_said_so() -> None:
    model = fit_click_model(_simulated(1.6, 2000, 0.0, seed=3))
    assert (model.measured, model.eta, model.explored_answers) == (False, 1.0, 0)
    assert "assumed" in model.describe() and "SLUICE_FEEDBACK_EXPLORATION" in model.describe()
    few = fit_click_model(_simulated(1.6, 2000, (MIN_EXPLORED - 10) / 2000, seed=4))
    assert not few.measured


def test_swapped_positions_map_back_to_the_rankers_order() -> None:
    shown = observations(5, 2, {2})
    assert [(o.position, o.original_rank, o.clicked) for o in shown] == [
        (1, 1, False),
        (2, 3, True),
        (3, 2, False),
        (4, 4, False),
        (5, 5, False),
    ]


def _impression(query: str, docs: str, clicked: set[int], **labels: set[int]) -> Impression:
    ids = tuple(f"beir://set/{d}" for d in docs)
    return Impression("r", query, tuple(f"c-{d}" for d in docs), ids, None, clicked, **labels)


NOISE = ClickNoise(relevant=0.8, other=0.1, prior=0.2)


def _labels(found: list[Impression], noise: ClickNoise = NOISE) -> Labels:
    return replace(learn_labels(found), noise=noise)  # η assumed 1: θ_p = 1/p


TRAIN_QUERY = next(f"q{n}" for n in range(100) if split_of(f"q{n}") == "train")
HELDOUT_QUERY = next(f"q{n}" for n in range(100) if split_of(f"q{n}") == "heldout")


def _texts(chunk_ids: list[str]) -> dict[str, str]:
    return {i: f"text {i}" for i in chunk_ids}


def test_a_click_where_few_look_counts_more_and_explicit_labels_outvote_clicks() -> None:
    found = [
        _impression("q", "abcde", {1, 5}),  # e clicked at 5, where a fifth of users look
        _impression("q", "abcde", {2}, not_relevant={1}),  # b clicked at 2; a marked not relevant
        _impression("q", "abcde", set(), relevant={3}),  # c marked relevant, never clicked
        _impression("q", "fgbae", set()),  # e seen again at 5, b at 3 and a at 4: unclicked
    ]
    labels = _labels(found)
    # e: clicked once in four showings at 5: P(relevant) 0.56; b: once in four, at 2, 2, 2, 3: 0.38
    shown = labels.queries["q"].shown
    assert NOISE.posterior(shown["beir://set/e"]) == pytest.approx(0.56, abs=0.01)
    assert NOISE.posterior(shown["beir://set/b"]) == pytest.approx(0.38, abs=0.01)
    assert labels.relevant("q") == ["beir://set/c", "beir://set/e"]
    entries = golden_entries(labels, split_of("q"))
    assert entries == [{"query": "q", "relevant": ["c", "e"]}], "the last URI segment, as BEIR"


def test_the_click_noise_is_fitted_without_labels() -> None:
    rng = random.Random(5)
    items = []
    for _ in range(4000):
        relevant = rng.random() < 0.15
        shown = []
        for _ in range(rng.randint(1, 5)):
            theta = 1 / rng.randint(1, 10)
            chance = theta * (0.8 if relevant else 0.1)
            shown.append((theta, rng.random() < chance))
        items.append(shown)
    noise = fit_click_noise(items)
    assert noise.relevant == pytest.approx(0.8, abs=0.1)
    assert noise.other == pytest.approx(0.1, abs=0.02)
    assert noise.prior == pytest.approx(0.15, abs=0.03)


def test_the_prior_by_rank_is_fitted_without_labels() -> None:
    rng = random.Random(6)
    items, ranks = [], []
    for _ in range(6000):
        rank = rng.randint(1, 10)
        relevant = rng.random() < 1 / (1 + math.exp(-(math.log(0.7 / 0.3) - 2.0 * math.log(rank))))
        theta = 1 / rank  # shown where the ranker put it
        chance = theta * (0.8 if relevant else 0.1)
        items.append([(theta, rng.random() < chance) for _ in range(rng.randint(1, 4))])
        ranks.append(rank)
    noise = fit_click_noise(items, ranks)
    assert noise.prior == pytest.approx(0.7, abs=0.08)
    assert noise.decay == pytest.approx(2.0, abs=0.4)
    assert noise.relevant == pytest.approx(0.8, abs=0.1)
    assert noise.other == pytest.approx(0.1, abs=0.03)


@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from([1.0, 0.5, 0.2, 0.1]), st.booleans()), min_size=1),
            st.integers(1, 10),
        ),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_the_click_noise_fit_is_finite_on_any_clicks(
    items: list[tuple[list[tuple[float, bool]], int]],
) -> None:
    # A few answers, all clicked at one position, separate the classes by rank: the fit must
    # still end, finite, with probabilities (once: OverflowError on 40 answers clicked at 5).
    noise = fit_click_noise([shown for shown, _ in items], [rank for _, rank in items])
    assert 0 < noise.other <= noise.relevant < 1 and 0 < noise.prior < 1
    assert math.isfinite(noise.decay)
    for shown, rank in items:
        assert 0 <= noise.posterior(shown, rank) <= 1


NOISE_BY_RANK = ClickNoise(relevant=0.8, other=0.1, prior=0.8, decay=2.5)


def test_a_click_counts_by_where_the_ranker_put_the_hit() -> None:
    # One click each: on the hit the ranker put first, and on the one it put tenth (where a
    # tenth of users look). With one prior for every rank both would be relevant (P 0.67).
    found = [_impression("q", "abcdefghij", {1, 10})]
    labels = _labels(found, NOISE_BY_RANK)
    assert labels.probability("q", "beir://set/a") == pytest.approx(0.97, abs=0.01)
    assert labels.probability("q", "beir://set/j") == pytest.approx(0.09, abs=0.01)
    assert labels.relevant("q") == ["beir://set/a"]
    flat = replace(labels, noise=NOISE)
    assert flat.relevant("q") == ["beir://set/a", "beir://set/j"]


def test_a_passed_over_hit_that_may_be_relevant_is_no_negative() -> None:
    # a, ranked first and not clicked, is still about even odds (0.47), b 0.31: neither may
    # teach the reranker "not relevant"; d, e, f (0.09 and less) may.
    found = [_impression(TRAIN_QUERY, "abcdef", {3})]
    labels = _labels(found, NOISE_BY_RANK)
    assert labels.probability(TRAIN_QUERY, "beir://set/a") == pytest.approx(0.47, abs=0.01)
    pairs = feedback_pairs(found, labels, _texts, negatives=6)
    assert [(p.passage, p.label) for p in pairs] == [
        ("text c-c", 1.0),
        ("text c-d", 0.0),
        ("text c-e", 0.0),
        ("text c-f", 0.0),
    ]


def test_only_the_answers_own_key_and_reported_answers_are_joined() -> None:
    answer = {
        "request_id": "r1",
        "key_id": "k1",
        "index": "default",
        "query": "  pump   seals ",
        "chunk_ids": ["c1", "c2"],
        "doc_ids": ["d1", "d2"],
        "explored_swap": 1,
    }
    unreported = {**answer, "request_id": "r2"}
    feedback = [
        {"request_id": "r1", "key_id": "k1", "label": "clicked", "answer_rank": 2},
        {"request_id": "r1", "key_id": "k2", "label": "clicked", "answer_rank": 1},
    ]
    [found] = impressions([answer, unreported], feedback)
    assert (found.query, found.clicked, found.explored_swap) == ("pump seals", {2}, 1)
    assert impressions([answer], feedback, index="other") == []


def test_pairs_take_passed_over_hits_above_the_click_first() -> None:
    found = [_impression(TRAIN_QUERY, "abcdef", {4})]
    labels = _labels(found)
    pairs = feedback_pairs(found, labels, _texts, negatives=4)
    assert [(p.passage, p.label) for p in pairs] == [
        ("text c-d", 1.0),
        ("text c-a", 0.0),
        ("text c-b", 0.0),
        ("text c-c", 0.0),
        ("text c-e", 0.0),
    ]
    assert feedback_pairs(found, labels, lambda ids: {}, split="heldout") == []

    def ranking(q: str) -> list[tuple[str, str, str]]:  # Sluice's own order, past the answer
        docs = ["d", "x", "a", "y", "z"]  # d: the clicked document; a: shown already
        return [(f"c-{d}2", f"beir://set/{d}", f"deep {d}") for d in docs]

    deeper = feedback_pairs(found, labels, _texts, 7, ranking=ranking)
    assert [p.passage for p in deeper if not p.label] == [
        *(f"text c-{d}" for d in "abcef"),
        "deep x",
        "deep a",
    ], "passed-over first, then the ranking, never the chosen document"


def test_a_refit_takes_the_held_out_queries_too() -> None:
    found = [_impression(TRAIN_QUERY, "abc", {2}), _impression(HELDOUT_QUERY, "def", {1})]
    labels = _labels(found)
    trained = {p.query for p in feedback_pairs(found, labels, _texts)}
    refit = feedback_pairs(found, labels, _texts, split=None)
    assert trained == {TRAIN_QUERY} and {p.query for p in refit} == {TRAIN_QUERY, HELDOUT_QUERY}
    assert [p.passage for p in refit if p.query == HELDOUT_QUERY and p.label] == ["text c-d"]


def test_the_split_is_stable_and_near_its_share() -> None:
    queries = [f"query number {n}" for n in range(2000)]
    held = [q for q in queries if split_of(q) == "heldout"]
    assert 0.17 < len(held) / len(queries) < 0.23
    assert held == [q for q in queries if split_of(f"  {q} ") == "heldout"]


def test_golden_from_feedback_reads_what_the_api_logged(
    tmp_path: Path, embedder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from retrieval_api.app import create_app
    from sluice.cli.main import app

    folder = tmp_path / "docs"
    folder.mkdir()
    for number in range(6):
        (folder / f"d{number}.md").write_text(f"# Pump {number}\n\nPump part {number} wears.\n")
    # 0.3 of 40 answers: some swapped (all unswapped once in 10^6 runs), never the 30 that measure
    # η (once in 10^8; at 0.5 it was once in 900, and CI saw it).
    settings = Settings(data_dir=tmp_path / "data", auth="required", feedback_exploration=0.3)
    ingest_folder(settings, folder, embedder, source_name="docs")
    key = KeyStore(settings.api_keys_path).create(["default"])[0]
    headers = {"Authorization": f"Bearer {key}"}
    orders: dict[str, set[tuple[str, ...]]] = {}
    wanted: dict[str, str] = {}
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for n in range(40):
            query = f"pump part {n % 8}"
            body: dict[str, Any] = client.post(
                "/retrieve", json={"query": query, "mode": "bm25", "top_k": 5}, headers=headers
            ).json()
            assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
            orders.setdefault(query, set()).add(tuple(h["chunk_id"] for h in body["hits"]))
            last = body["hits"][-1]
            wanted[query] = last["doc_id"].rsplit("/", 1)[-1]
            send_click(client, headers, body, last, f"e{n}")
    assert any(len(seen) > 1 for seen in orders.values()), "some answers were explored"

    monkeypatch.setenv("SLUICE_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(
        app, ["golden", "--from-feedback", "--out", str(tmp_path / "g"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["answers"], report["queries"], report["eta_measured"]) == (40, 8, False)
    written = [
        json.loads(line)
        for split in ("train", "heldout")
        for line in (tmp_path / "g" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert len(written) == 8
    for entry in written:
        assert wanted[entry["query"]] in entry["relevant"]
    missing = CliRunner().invoke(app, ["golden", "--out", str(tmp_path / "h")])
    assert missing.exit_code == 2 and "--from-feedback" in missing.output
