"""From a ranking of chunks to what an application reads: diversified, thresholded, grouped
by document, paged, with context and highlights. Runs after fusion and reranking, so every
step sees the final scores; plain functions over the searcher's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from index.bm25.encoder import Bm25Encoder
from index.contracts import ScoredPoint
from index.search.context import Expansion, expand_context
from index.search.diversity import mmr_order
from index.search.grouping import DocumentGroup, group_by_document
from index.search.highlights import highlight_spans
from index.search.searcher import IndexSearcher, SearchOutcome

DEFAULT_MMR_CANDIDATES = 50


@dataclass(frozen=True)
class Shape:
    """What to do with a ranking; the defaults leave it as it is."""

    limit: int = 10
    """Hits per page, or groups per page with `group_by`."""
    offset: int = 0
    """Hits (or groups) already returned by earlier pages."""
    group_by: Literal["doc"] | None = None
    group_size: int = 3
    mmr_diversity: float | None = None
    mmr_candidates: int = DEFAULT_MMR_CANDIDATES
    min_score: float | None = None
    min_relative_score: float | None = None
    expansion: Expansion | None = None
    highlights: bool = True

    def depth(self, pool: int) -> int:
        """How many first-stage hits the ranking needs: grouping sees the whole pool, MMR at
        least its own candidates, a list one more than this page (to know whether more follow).
        Never past `pool`, the depth at which a ranking is the same on every page."""
        if self.group_by:
            return pool
        wanted = self.offset + self.limit + 1
        if self.mmr_diversity is not None:
            wanted = max(wanted, self.mmr_candidates)
        return min(pool, wanted)


@dataclass
class Shaped:
    hits: list[ScoredPoint]
    """The page's hits; with groups, every group's hits in group order."""
    groups: list[DocumentGroup] | None = None
    more: bool = False
    """Whether a next page exists within the depth."""
    relative: dict[str, float] = field(default_factory=dict)
    mmr: dict[str, float] = field(default_factory=dict)
    contexts: dict[str, str] = field(default_factory=dict)
    highlights: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    context_highlights: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """The same spans in a hit's `context_text` (with `expand`)."""
    highlight_notes: dict[str, str] = field(default_factory=dict)
    """Why a hit has no highlights in its text, where it has none."""


def relative_scores(ranking: list[ScoredPoint]) -> dict[str, float]:
    """Each score over the best one (1.0 is the top hit), the same scale for every query,
    mode and fusion; where the best score is not positive, 1.0 for the best and 0 otherwise."""
    top = max((p.score for p in ranking), default=0.0)
    return {p.id: (p.score / top if top > 0 else float(p.score == top)) for p in ranking}


def shape(searcher: IndexSearcher, outcome: SearchOutcome, query: str, spec: Shape) -> Shaped:
    ranking = list(outcome.result.hits)
    relative = relative_scores(ranking)
    mmr: dict[str, float] = {}
    if spec.mmr_diversity is not None and ranking:
        # MMR reorders its candidates; the hits below them follow in their order (as below
        # the rerank pool), so a page past the candidates continues the same ranking.
        candidates = ranking[: spec.mmr_candidates]
        vectors = _dense_vectors(searcher, outcome.collection, candidates)
        picked = mmr_order(candidates, vectors, spec.mmr_diversity)
        ranking = [point for point, _ in picked] + ranking[spec.mmr_candidates :]
        mmr = {point.id: round(score, 6) for point, score in picked}
    if spec.min_score is not None:
        ranking = [p for p in ranking if p.score >= spec.min_score]
    if spec.min_relative_score is not None:
        ranking = [p for p in ranking if relative[p.id] >= spec.min_relative_score]
    end = spec.offset + spec.limit
    groups = None
    if spec.group_by == "doc":
        every = group_by_document(ranking, spec.group_size)
        groups, more = every[spec.offset : end], len(every) > end
        hits = [p for group in groups for p in group.points]
    else:
        hits, more = ranking[spec.offset : end], len(ranking) > end
    shaped = Shaped(hits=hits, groups=groups, more=more, relative=relative, mmr=mmr)
    if spec.expansion is not None and hits:
        shaped.contexts = expand_context(searcher.store, outcome.collection, hits, spec.expansion)
    if spec.highlights:
        _highlight(shaped, searcher.bm25_for(outcome.spec), query)
    return shaped


HIGHLIGHT_NOTES = {
    "context": "the query's terms are in the hit's title or headings (`title`, `headings`), "
    "which are indexed with its text, not in the text itself",
    "context_text": "the query's terms are in the neighbouring chunks (`context_text`, "
    "`context_highlights`), not in this one",
    "none": "no query term is in the hit's text: it was found by meaning (dense search)",
}


def _highlight(shaped: Shaped, encoder: Bm25Encoder, query: str) -> None:
    """Spans of the query's terms in each hit's text (and its `context_text`); a hit with none
    in its text says why, since a BM25 score can come from the title and headings indexed with
    it."""
    for point in shaped.hits:
        spans = highlight_spans(encoder, query, str(point.payload.get("text", "")))
        shaped.highlights[point.id] = spans
        around = shaped.contexts.get(point.id)
        if around is not None:
            shaped.context_highlights[point.id] = highlight_spans(encoder, query, around)
        if spans:
            continue
        if highlight_spans(encoder, query, str(point.payload.get("context") or "")):
            shaped.highlight_notes[point.id] = HIGHLIGHT_NOTES["context"]
        elif shaped.context_highlights.get(point.id):
            shaped.highlight_notes[point.id] = HIGHLIGHT_NOTES["context_text"]
        else:
            shaped.highlight_notes[point.id] = HIGHLIGHT_NOTES["none"]


def _dense_vectors(
    searcher: IndexSearcher, collection: str, points: list[ScoredPoint]
) -> dict[str, npt.NDArray[np.float32]]:
    fetched = searcher.store.fetch(collection, [p.id for p in points], dense=True)
    return {p.id: p.dense for p in fetched if p.dense is not None}
