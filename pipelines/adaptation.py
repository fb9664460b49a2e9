"""Adapting the embedder to a corpus with no queries and no labels: pseudo-queries made from the
corpus itself, hard negatives from Sluice's own BM25.

Two published self-supervised recipes, chosen per chunk by what it has:
- **Title → body** (the (title, passage) pairs of E5's and GTE's contrastive pre-training,
  Wang et al. 2022, Li et al. 2023): a document's title as the query, a chunk of its body as the
  positive, where the document has a title of its own (not its file name);
- **Inverse Cloze Task** (Lee, Chang and Toutanova 2019): one sentence of a chunk as the query,
  the rest of the chunk as the positive (the sentence is left in 10 % of the time, as there, so
  that lexical overlap is learnt too);
- **Cropping** (Contriever's independent crops, Izacard et al. 2022), for a chunk of one long
  sentence or none (abstracts without punctuation): a random span of a quarter to half of its
  words as the query, the rest as the positive.

For each pseudo-query, the negative is a chunk of another document that BM25 ranks high for it,
below the very top (ranks `SKIP_TOP`+1 on: near-duplicates rank first and would be false
negatives). Training is `pipelines.embedder_training.train_bi_encoder`, the same loss as
`sluice train-embedder`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from index.search.searcher import IndexSearcher
from pipelines.training_pairs import TrainingPair

SKIP_TOP = 2
NEGATIVE_DEPTH = 15
KEEP_SENTENCE = 0.1
MIN_WORDS = 5
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SPACED_STOP = re.compile(r"\s+([.!?])(?=\s|$)")  # "levels . correlation" (old collections)


@dataclass(frozen=True)
class PseudoQuery:
    query: str
    positive: str
    doc_id: str
    recipe: str


def pseudo_query(payload: dict[str, Any], rng: random.Random) -> PseudoQuery | None:
    """One pseudo-query for a stored chunk, or None when the chunk is too short for any."""
    text = str(payload.get("text") or "").strip()
    title = str(payload.get("title") or "").strip()
    doc_id = str(payload.get("doc_id") or "")
    uri_name = doc_id.rsplit("/", 1)[-1]
    body = text[len(title) :].strip() if title and text.startswith(title) else text
    if (
        len(title.split()) >= 3
        and title not in (uri_name, uri_name.rsplit(".", 1)[0])
        and len(body.split()) >= 2 * MIN_WORDS
    ):
        return PseudoQuery(title, body, doc_id, "title")
    sentences = _SENTENCE.split(_SPACED_STOP.sub(r"\1", text))
    long_enough = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_WORDS]
    if len(sentences) >= 2 and long_enough:
        chosen = rng.choice(long_enough)
        kept = rng.random() < KEEP_SENTENCE
        rest = sentences if kept else [*sentences[:chosen], *sentences[chosen + 1 :]]
        if len(" ".join(rest).split()) >= MIN_WORDS:
            return PseudoQuery(sentences[chosen], " ".join(rest), doc_id, "ict")
    words = text.split()
    if len(words) < 3 * MIN_WORDS:
        return None
    length = rng.randint(max(MIN_WORDS, len(words) // 4), len(words) // 2)
    start = rng.randrange(len(words) - length + 1)
    rest = words if rng.random() < KEEP_SENTENCE else words[:start] + words[start + length :]
    return PseudoQuery(" ".join(words[start : start + length]), " ".join(rest), doc_id, "crop")


def adaptation_pairs(
    payloads: Iterable[dict[str, Any]],
    searcher: IndexSearcher,
    alias: str,
    max_queries: int = 2000,
    seed: int = 13,
) -> tuple[list[TrainingPair], dict[str, int]]:
    """Pairs for `train_bi_encoder` (a positive and one BM25 hard negative per pseudo-query)
    from at most `max_queries` chunks drawn at random; and how many each recipe made."""
    rng = random.Random(seed)
    chunks = list(payloads)
    rng.shuffle(chunks)
    pairs: list[TrainingPair] = []
    made = {"title": 0, "ict": 0, "crop": 0}
    seen_titles: set[str] = set()
    for payload in chunks:
        if sum(made.values()) >= max_queries:
            break
        found = pseudo_query(payload, rng)
        if found is None or (found.recipe == "title" and found.query in seen_titles):
            continue
        hits = searcher.search(alias, found.query, "bm25", limit=NEGATIVE_DEPTH).result.hits
        others = [h for h in hits if h.payload.get("doc_id") != found.doc_id][SKIP_TOP:]
        if not others:
            continue
        negative = str(rng.choice(others).payload.get("text") or "")
        seen_titles.add(found.query) if found.recipe == "title" else None
        made[found.recipe] += 1
        pairs.append(TrainingPair(found.query, found.positive, 1.0))
        pairs.append(TrainingPair(found.query, negative, 0.0))
    return pairs, made
