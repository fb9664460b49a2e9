"""Collapsing a ranking to documents: a document is one source's copy of a file."""

from __future__ import annotations

from index.contracts import ScoredPoint
from index.search.grouping import group_by_document


def _point(point_id: str, score: float, source: str, doc_id: str) -> ScoredPoint:
    return ScoredPoint(point_id, score, {"doc_id": doc_id, "source": source})


def test_two_sources_copies_of_one_file_are_two_documents() -> None:
    shared = "file:///srv/ov/sub/s1.md"
    ranking = [
        _point("1", 0.9, "a", shared),
        _point("2", 0.8, "b", shared),
        _point("3", 0.7, "a", shared),
        _point("4", 0.6, "a", "file:///srv/ov/top.md"),
    ]

    groups = group_by_document(ranking, per_group=5)

    assert [(g.doc_id, [p.id for p in g.points]) for g in groups] == [
        (shared, ["1", "3"]),
        (shared, ["2"]),
        ("file:///srv/ov/top.md", ["4"]),
    ]
    assert [g.score for g in groups] == [0.9, 0.8, 0.6]
