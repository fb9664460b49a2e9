"""From what users did with answers to labels: a golden set, and training pairs for the reranker
and the embedder.

An answer counts once someone reported on it (`POST /feedback`): an answer nobody reported on may
never have been shown to a person. Clicks are corrected for position bias with the click model
of `pipelines/click_model.py`: a document's relevance for a query is the mean over that query's
answers of its clicks weighted by 1/θ (the chance its position was looked at). Explicit labels
(`relevant`, `not_relevant`) outvote clicks. Queries are split into a training part and a
held-out part by a stable hash of their text, so that a model trained on one is judged on the
other, and every command splits the same way.
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
from pipelines.click_model import ClickModel, fit_click_model, observations
from pipelines.training_pairs import TrainingPair

Split = Literal["train", "heldout"]
HELDOUT_SHARE = 0.2
RELEVANCE_THRESHOLD = 0.5
"""Position-corrected click rate at which a document counts as relevant to a query."""


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


def click_model_of(found: Sequence[Impression]) -> ClickModel:
    return fit_click_model(
        (observations(len(i.chunk_ids), i.explored_swap, i.clicked), i.explored_swap is not None)
        for i in found
    )


def split_of(query: str, heldout_share: float = HELDOUT_SHARE) -> Split:
    """A query's part, the same in every process and every run."""
    digest = hashlib.sha256(normalised_query(query).encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout_share else "train"


@dataclass
class QueryLabels:
    """One query's documents with their position-corrected click rate and explicit votes."""

    answers: int = 0
    weighted_clicks: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    votes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def relevant(self, threshold: float = RELEVANCE_THRESHOLD) -> list[str]:
        """Documents judged relevant: by explicit votes where any, else by corrected clicks."""
        judged = []
        for doc_id in {*self.weighted_clicks, *self.votes}:
            vote = self.votes.get(doc_id, 0)
            rate = self.weighted_clicks.get(doc_id, 0.0) / max(1, self.answers)
            if vote > 0 or (vote == 0 and rate >= threshold):
                judged.append(doc_id)
        return sorted(judged)


def query_labels(found: Sequence[Impression], model: ClickModel) -> dict[str, QueryLabels]:
    labels: dict[str, QueryLabels] = defaultdict(QueryLabels)
    for impression in found:
        entry = labels[impression.query]
        entry.answers += 1
        for position in impression.clicked:
            if position <= len(impression.doc_ids):
                doc_id = impression.doc_ids[position - 1]
                entry.weighted_clicks[doc_id] += 1 / model.propensity(position)
        for positions, vote in ((impression.relevant, 1), (impression.not_relevant, -1)):
            for position in positions:
                if position <= len(impression.doc_ids):
                    entry.votes[impression.doc_ids[position - 1]] += vote
    return dict(labels)


def golden_entries(
    labels: dict[str, QueryLabels], split: Split, threshold: float = RELEVANCE_THRESHOLD
) -> list[dict[str, Any]]:
    """`{"query", "relevant"}` lines of one part, relevant documents by the last segment of
    their URI (what `load_golden_set` matches hits on)."""
    entries = []
    for query in sorted(labels):
        relevant = labels[query].relevant(threshold)
        if relevant and split_of(query) == split:
            entries.append({"query": query, "relevant": [doc_id_from_uri(d) for d in relevant]})
    return entries


def write_golden(entries: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    return path


def feedback_pairs(
    found: Sequence[Impression],
    labels: dict[str, QueryLabels],
    passages: Callable[[list[str]], dict[str, str]],
    negatives: int = 12,
    split: Split = "train",
    threshold: float = RELEVANCE_THRESHOLD,
) -> list[TrainingPair]:
    """Positives: the chunks users clicked or marked that belong to documents judged relevant.
    Hard negatives: what the same answers showed and the user passed over, those above the
    lowest click first (seen and skipped), then the rest by how likely they were seen.
    `passages` gives chunk ids' texts (chunks no longer stored are left out)."""
    positives: dict[str, dict[str, None]] = defaultdict(dict)
    passed_over: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    relevant = {q: set(entry.relevant(threshold)) for q, entry in labels.items()}
    for impression in found:
        if split_of(impression.query) != split:
            continue
        chosen = impression.clicked | impression.relevant
        lowest = max(chosen, default=0)
        for position, (chunk_id, doc_id) in enumerate(
            zip(impression.chunk_ids, impression.doc_ids, strict=False), start=1
        ):
            if doc_id in relevant.get(impression.query, ()):
                if position in chosen:
                    positives[impression.query][chunk_id] = None
            elif position not in chosen:
                order = (0 if position < lowest else 1, position)
                known = passed_over[impression.query].get(chunk_id, order)
                passed_over[impression.query][chunk_id] = min(known, order)
    wanted = {c for q in positives for c in [*positives[q], *passed_over[q]]}
    texts = passages(sorted(wanted))
    pairs: list[TrainingPair] = []
    for query, chunk_ids in positives.items():
        ranked = sorted(passed_over[query], key=lambda c: passed_over[query][c])
        kept = [c for c in ranked if c in texts][:negatives]
        if not kept:
            continue
        pairs.extend(TrainingPair(query, texts[c], 1.0) for c in chunk_ids if c in texts)
        pairs.extend(TrainingPair(query, texts[c], 0.0) for c in kept)
    return pairs
