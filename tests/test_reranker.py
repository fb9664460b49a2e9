"""The rerank stage: budget, failures and blending. The model here is the packaged MiniLM with an
untrained classification head: right for the mechanics, not for quality."""

from __future__ import annotations

import pytest

from index.contracts import RerankSkipped, ScoredPoint
from index.fusion import blend_scores
from index.models.reranker import CrossEncoderReranker

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _candidates(n: int = 12) -> list[ScoredPoint]:
    return [
        ScoredPoint(f"id{i}", 1.0 / (i + 1), {"text": f"passage number {i} about pumps"})
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def reranker() -> CrossEncoderReranker:
    model = CrossEncoderReranker(MINILM, device="cpu", batch_size=4, budget_ms=60_000)
    model.warm_up()
    return model


def test_reranked_order_follows_the_rerank_scores(reranker: CrossEncoderReranker) -> None:
    reranked = reranker.rerank("pumps", _candidates())
    assert sorted(r.point.id for r in reranked) == sorted(p.id for p in _candidates())
    scores = [r.final_score for r in reranked]
    assert scores == sorted(scores, reverse=True)


def test_a_rerank_expected_to_exceed_the_budget_is_skipped(reranker: CrossEncoderReranker) -> None:
    reranker.rerank("pumps", _candidates())  # measures the time per pair
    tight = CrossEncoderReranker(MINILM, device="cpu", budget_ms=0.001)
    tight._model, tight._seconds_per_pair = reranker._model, reranker._seconds_per_pair
    with pytest.raises(RerankSkipped, match="rerank_budget"):
        tight.rerank("pumps", _candidates())


def test_skips_decay_the_estimate_so_a_slow_spell_does_not_disable_reranking(
    reranker: CrossEncoderReranker,
) -> None:
    reranker.rerank("pumps", _candidates())
    per_pair = reranker._seconds_per_pair
    assert per_pair is not None
    spell = CrossEncoderReranker(MINILM, device="cpu", budget_ms=1000 * per_pair * 5 * 1.5)
    spell._model, spell._seconds_per_pair = reranker._model, per_pair * 4  # one slow call
    skipped = 0
    for _ in range(20):
        try:
            spell.rerank("pumps", _candidates())
            break
        except RerankSkipped:
            skipped += 1
    assert 1 <= skipped < 20, "after a few skips it measures again and reranks"


def test_a_model_that_cannot_load_is_reported_not_raised() -> None:
    broken = CrossEncoderReranker("/nonexistent/cross-encoder")
    with pytest.raises(RerankSkipped, match="reranker unavailable"):
        broken.rerank("q", _candidates(2))


def test_blend_mixes_normalised_scores() -> None:
    assert blend_scores([2.0, 0.0], [0.0, 1.0], alpha=1.0) == [2.0, 0.0]
    assert blend_scores([2.0, 0.0], [0.0, 1.0], alpha=0.5) == [0.5, 0.5]
    assert blend_scores([3.0, 1.0], [1.0, 0.0], alpha=0.25) == [1.0, 0.0]


def test_a_service_reranker_skips_while_its_model_loads_then_reranks() -> None:
    """Loading is not charged to a request: the first asks start the load and are skipped."""
    import time

    service = CrossEncoderReranker(MINILM, device="cpu", budget_ms=60_000, load_in_background=True)
    assert service.is_loading()  # a service starts the load at once: it is not ready yet
    with pytest.raises(RerankSkipped, match=r"^rerank_loading"):
        service.rerank("pumps", _candidates(3))
    deadline = time.monotonic() + 120
    while True:
        try:
            reranked = service.rerank("pumps", _candidates(3))
            break
        except RerankSkipped as skipped:
            assert str(skipped).startswith("rerank_loading")
            assert time.monotonic() < deadline, "the model never finished loading"
            time.sleep(0.1)
    assert len(reranked) == 3
    assert not service.is_loading()
    assert not CrossEncoderReranker(MINILM).is_loading()  # loads on its first rerank, in it


def test_a_service_reranker_that_cannot_load_says_why() -> None:
    import time

    broken = CrossEncoderReranker("/nonexistent/cross-encoder", load_in_background=True)
    deadline = time.monotonic() + 60
    reasons = set()
    while time.monotonic() < deadline:
        with pytest.raises(RerankSkipped) as skipped:
            broken.rerank("pumps", _candidates(2))
        reasons.add(str(skipped.value).split(":")[0])
        if "reranker unavailable" in reasons:
            break
        time.sleep(0.1)
    assert "reranker unavailable" in reasons
    assert not broken.is_loading()  # failed: it does not hold a service's readiness back
