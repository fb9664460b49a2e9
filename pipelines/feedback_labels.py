"""From what users did with answers to labels: a golden set, and training pairs for the reranker
and the embedder.

An answer counts once someone reported on it (`POST /feedback`): an answer nobody reported on may
never have been shown to a person. Clicks are read through the click model of
`pipelines/click_model.py`: each time a document was shown, the chance its position was looked at
(θ, position bias), and how often users click what they look at when it is relevant and when it
is not (click noise, fitted by EM); a document is relevant to a query when its clicks make that
more likely than not. Explicit labels (`relevant`, `not_relevant`) outvote clicks. Queries are
split into a training part and a held-out part by a stable hash of their text, so that a model
trained on one is judged on the other, and every command splits the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from index.search.cache import normalised_query
from pipelines.beir import doc_id_from_uri
from pipelines.click_model import (
    ClickModel,
    ClickNoise,
    fit_click_model,
    fit_click_noise,
    observations,
)
from pipelines.training_pairs import TrainingPair

Split = Literal["train", "heldout"]
HELDOUT_SHARE = 0.2
RELEVANCE_THRESHOLD = 0.5
"""Probability of relevance, given its clicks, at which a document counts as relevant."""
NEGATIVE_CEILING = 0.25
"""A passed-over hit is a negative only below this probability of relevance: a hit the ranker
put first and nobody clicked is still about even odds (on the SciFact simulation, 27 % of the
hits passed over above a click were relevant; 3 % of those below this)."""


@dataclass
class Impression:
    """One answer that feedback was given on, in the order it was answered."""

    request_id: str
    query: str
    chunk_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]
    explored_swap: int | None = None
    clicked: set[int] = field(default_factory=set)
    """Positions (from 1) of the answer, likewise below."""
    relevant: set[int] = field(default_factory=set)
    not_relevant: set[int] = field(default_factory=set)


def impressions(
    query_log: Iterable[dict[str, Any]],
    feedback: Iterable[dict[str, Any]],
    since: datetime | None = None,
    index: str | None = None,
) -> list[Impression]:
    """Answers joined to their feedback on request id (and key: only the answer's own key may
    give feedback, so any other row is not about it). Answers kept only as a hash of their
    query (`SLUICE_QUERY_LOG_TEXT=false`) cannot teach anything and are left out."""
    items: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for row in feedback:
        if since is None or row["time"] >= since:
            items[(row["request_id"], row.get("key_id"))].append(row)
    found = []
    for answer in query_log:
        rows = items.pop((answer["request_id"], answer.get("key_id")), None)
        if not rows or not answer.get("query") or (index and answer.get("index") != index):
            continue
        impression = Impression(
            answer["request_id"],
            normalised_query(answer["query"]),
            tuple(answer.get("chunk_ids") or ()),
            tuple(answer.get("doc_ids") or ()),
            answer.get("explored_swap"),
        )
        for row in rows:
            position = row.get("answer_rank")
            if position is None:
                continue
            label = row["label"]
            target = {"clicked": impression.clicked, "relevant": impression.relevant}
            target.get(label, impression.not_relevant).add(int(position))
        found.append(impression)
    return found


def split_of(query: str, heldout_share: float = HELDOUT_SHARE) -> Split:
    """A query's part, the same in every process and every run."""
    digest = hashlib.sha256(normalised_query(query).encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout_share else "train"


@dataclass
class QueryLabels:
    """One query's documents: each time one was shown (θ of its position, clicked), and the
    explicit votes on it (relevant +1, not relevant -1)."""

    shown: dict[str, list[tuple[float, bool]]] = field(default_factory=lambda: defaultdict(list))
    votes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ranks: dict[str, int] = field(default_factory=dict)
    """The best rank the ranker gave each document (before any exploration swap)."""


@dataclass
class Labels:
    """What the feedback says: the click model, the noise of clicks, and each query's labels."""

    model: ClickModel
    noise: ClickNoise
    queries: dict[str, QueryLabels]

    def relevant(self, query: str, threshold: float = RELEVANCE_THRESHOLD) -> list[str]:
        """Documents judged relevant: by explicit votes where any, else by the probability that
        their clicks (position bias and click noise accounted for) come from a relevant hit."""
        entry = self.queries.get(query)
        if entry is None:
            return []
        judged = []
        for doc_id in {*entry.shown, *entry.votes}:
            vote = entry.votes.get(doc_id, 0)
            clicked = any(c for _, c in entry.shown.get(doc_id, []))
            if vote > 0 or (vote == 0 and clicked and self.probability(query, doc_id) >= threshold):
                judged.append(doc_id)
        return sorted(judged)

    def probability(self, query: str, doc_id: str) -> float:
        """P(relevant | its clicks and its rank) of a document shown for `query` (0 when never
        shown); explicit votes are not counted here."""
        entry = self.queries.get(query)
        if entry is None or doc_id not in entry.shown:
            return 0.0
        return self.noise.posterior(entry.shown[doc_id], entry.ranks.get(doc_id, 1))


def learn_labels(found: Sequence[Impression]) -> Labels:
    """The click model from the swapped answers, the click noise by EM, then the labels."""
    model = fit_click_model(
        (observations(len(i.chunk_ids), i.explored_swap, i.clicked), i.explored_swap is not None)
        for i in found
    )
    queries: dict[str, QueryLabels] = defaultdict(QueryLabels)
    for impression in found:
        entry = queries[impression.query]
        shown = observations(len(impression.doc_ids), impression.explored_swap, impression.clicked)
        for seen, doc_id in zip(shown, impression.doc_ids, strict=False):
            entry.shown[doc_id].append((model.propensity(seen.position), seen.clicked))
            entry.ranks[doc_id] = min(
                entry.ranks.get(doc_id, seen.original_rank), seen.original_rank
            )
        for positions, vote in ((impression.relevant, 1), (impression.not_relevant, -1)):
            for position in positions:
                if position <= len(impression.doc_ids):
                    entry.votes[impression.doc_ids[position - 1]] += vote
    pairs = [(e.shown[d], e.ranks[d]) for e in queries.values() for d in e.shown]
    noise = fit_click_noise([shown for shown, _ in pairs], [rank for _, rank in pairs])
    return Labels(model, noise, dict(queries))


def golden_entries(
    labels: Labels, split: Split, threshold: float = RELEVANCE_THRESHOLD
) -> list[dict[str, Any]]:
    """`{"query", "relevant"}` lines of one part, relevant documents by the last segment of
    their URI (what `load_golden_set` matches hits on)."""
    entries = []
    for query in sorted(labels.queries):
        relevant = labels.relevant(query, threshold)
        if relevant and split_of(query) == split:
            entries.append({"query": query, "relevant": [doc_id_from_uri(d) for d in relevant]})
    return entries


def write_golden(entries: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    return path


def feedback_pairs(
    found: Sequence[Impression],
    labels: Labels,
    passages: Callable[[list[str]], dict[str, str]],
    negatives: int = 12,
    split: Split | None = "train",
    threshold: float = RELEVANCE_THRESHOLD,
    ranking: Callable[[str], list[tuple[str, str, str]]] | None = None,
) -> list[TrainingPair]:
    """Positives: the chunks users clicked or marked that belong to documents judged relevant.
    Hard negatives: what the same answers showed and the user passed over, those above the
    lowest click first (seen and skipped), then the rest by how likely they were seen, each only
    while it is unlikely to be relevant (`NEGATIVE_CEILING`); then,
    up to `negatives`, what `ranking` (Sluice's own search: chunk id, doc id, text) puts next
    for the query, as `sluice train-reranker` mines a labelled set. No document judged relevant
    or chosen by a user is a negative. `passages` gives chunk ids' texts (chunks no longer
    stored are left out). `split` None: every query, held-out ones too (a refit once the gate
    has judged the recipe)."""
    positives: dict[str, dict[str, None]] = defaultdict(dict)
    passed_over: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    chosen_docs: dict[str, set[str]] = defaultdict(set)
    relevant = {q: set(labels.relevant(q, threshold)) for q in labels.queries}
    for impression in found:
        if split is not None and split_of(impression.query) != split:
            continue
        chosen = impression.clicked | impression.relevant
        lowest = max(chosen, default=0)
        for position, (chunk_id, doc_id) in enumerate(
            zip(impression.chunk_ids, impression.doc_ids, strict=False), start=1
        ):
            if position in chosen:
                chosen_docs[impression.query].add(doc_id)
            if doc_id in relevant.get(impression.query, ()):
                if position in chosen:
                    positives[impression.query][chunk_id] = None
            elif (
                position not in chosen
                and labels.probability(impression.query, doc_id) < NEGATIVE_CEILING
            ):
                order = (0 if position < lowest else 1, position)
                known = passed_over[impression.query].get(chunk_id, order)
                passed_over[impression.query][chunk_id] = min(known, order)
    wanted = {c for q in positives for c in [*positives[q], *passed_over[q]]}
    texts = passages(sorted(wanted))
    pairs: list[TrainingPair] = []
    for query, chunk_ids in positives.items():
        ranked = sorted(passed_over[query], key=lambda c: passed_over[query][c])
        kept = [c for c in ranked if c in texts][:negatives]
        taken = {*kept, *chunk_ids}
        excluded = relevant.get(query, set()) | chosen_docs[query]
        for chunk_id, doc_id, text in ranking(query) if ranking and len(kept) < negatives else []:
            if len(kept) == negatives:
                break
            if (
                chunk_id not in taken
                and doc_id not in excluded
                and labels.probability(query, doc_id) < NEGATIVE_CEILING
            ):
                kept.append(chunk_id)
                taken.add(chunk_id)
                texts[chunk_id] = text
        if not kept:
            continue
        pairs.extend(TrainingPair(query, texts[c], 1.0) for c in chunk_ids if c in texts)
        pairs.extend(TrainingPair(query, texts[c], 0.0) for c in kept)
    return pairs
