"""Where a hit matches the query: character spans of the query's terms in its text."""

from __future__ import annotations

from index.bm25.encoder import Bm25Encoder


def highlight_spans(encoder: Bm25Encoder, query: str, text: str) -> list[tuple[int, int]]:
    """`[start, end)` spans of the words of `text` whose BM25 term (lowercased, stop words
    dropped, stemmed as the index was) is one of the query's: "running" marks "runs"."""
    wanted = set(encoder.tokenize(query))
    if not wanted:
        return []
    return [(start, end) for term, start, end in encoder.term_spans(text) if term in wanted]
