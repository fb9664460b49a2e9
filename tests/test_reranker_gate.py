"""The reranker gate judges a trained reranker at the blend that suits it (chosen as `sluice tune`
chooses), against what serves now scored with its own model: one reranker that knows the answers
and one that gets them backwards, on questions that share almost no words with their documents."""

from __future__ import annotations

from collections.abc import Sequence

from composition.components import Components
from config.settings import Settings
from index.contracts import RerankedPoint, ScoredPoint
from pipelines.beir import doc_id_from_uri
from pipelines.evaluation import load_golden_set
from pipelines.reranker_gate import BlendVerdict, judge_reranker
from tests.test_reembed import QUESTIONS
from tests.test_tuning import paraphrases  # noqa: F401  (the fixture)

ANSWERS = {question: doc for doc, question in QUESTIONS.items()}


class AnswerKey:
    """Scores a passage by whether its document answers the question: +1 (`sign` 1), or the
    reverse (`sign` −1). A ranking function from the golden set, as the test's reference."""

    def __init__(self, sign: float) -> None:
        self.model_id = f"answer-key{sign:+g}"
        self.sign = sign

    def warm_up(self) -> None: ...

    def warm_up_in_background(self) -> None: ...

    def is_loading(self) -> bool:
        return False

    def rerank(
        self, query: str, candidates: Sequence[ScoredPoint], blend: float | None = None
    ) -> list[RerankedPoint]:
        scored = []
        for point in candidates:
            right = doc_id_from_uri(str(point.payload["uri"])) == ANSWERS[query]
            score = self.sign * float(right)
            scored.append(RerankedPoint(point, score, score))
        return scored


def _judge(settings: Settings, trained: AnswerKey, serving: AnswerKey | None) -> BlendVerdict:
    assert settings.golden_set is not None
    parts = Components(settings)
    store = parts.store()
    try:
        searcher = parts.searcher(store)
        return judge_reranker(
            searcher, settings.index_name, load_golden_set(settings.golden_set),
            parts.hybrid_defaults(), trained, serving, "ndcg@10",
        )  # fmt: skip
    finally:
        store.close()


def test_a_reranker_that_knows_the_answers_passes_at_the_serving_blend(
    paraphrases: Settings,  # noqa: F811
) -> None:
    verdict = _judge(paraphrases, AnswerKey(1), None)
    assert verdict.serving_blend == paraphrases.rerank_blend == 0.7
    assert verdict.blend == 0.7, "no other blend does better: ties keep the serving one"
    assert verdict.new == verdict.new_at_serving_blend > verdict.old + 0.1


def test_a_backwards_reranker_is_judged_at_the_blend_that_harms_least_and_never_beats_hybrid(
    paraphrases: Settings,  # noqa: F811
) -> None:
    verdict = _judge(paraphrases, AnswerKey(-1), None)
    assert verdict.blend < verdict.serving_blend and verdict.cv_gain > 0
    assert verdict.new_at_serving_blend < verdict.new <= verdict.old


def test_what_serves_now_is_scored_with_its_own_model(
    paraphrases: Settings,  # noqa: F811
) -> None:
    hybrid_alone = _judge(paraphrases, AnswerKey(-1), None).old
    verdict = _judge(paraphrases, AnswerKey(-1), AnswerKey(1))
    assert verdict.old > hybrid_alone + 0.1 > verdict.new
