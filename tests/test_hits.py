"""Translating API requests into index filters, and search outcomes into API hits."""

from __future__ import annotations

from typing import Any

import pytest

from index.contracts import (
    Bm25Params,
    CollectionSpec,
    MatchAny,
    PayloadFilter,
    Range,
    ScoredPoint,
    SearchResult,
)
from index.search.searcher import SearchOutcome
from retrieval_api.hits import build_hits, to_payload_filter
from sluice_client.request import Filters, IntegerRange, MetadataFilters
from sluice_client.response import Hit

SPEC = CollectionSpec(name="docs__v1", embedding_model="stub", dimension=4, bm25=Bm25Params())


def _point(point_id: str, score: float, **payload: Any) -> ScoredPoint:
    return ScoredPoint(point_id, score, {"doc_id": f"doc-{point_id}", **payload})


def _outcome(
    hits: list[ScoredPoint],
    first_stage: list[ScoredPoint] | None = None,
    dense: list[ScoredPoint] | None = None,
    sparse: list[ScoredPoint] | None = None,
    rerank_scores: dict[str, float] | None = None,
) -> SearchOutcome:
    return SearchOutcome(
        result=SearchResult(hits=hits, dense=dense or [], sparse=sparse or []),
        collection=SPEC.name,
        spec=SPEC,
        first_stage=list(hits) if first_stage is None else first_stage,
        rerank_scores=rerank_scores or {},
    )


def _by_id(hits: list[Hit]) -> dict[str, Hit]:
    return {hit.chunk_id: hit for hit in hits}


# -- request filters -> PayloadFilter --------------------------------------------------------


def test_no_filters_give_an_empty_payload_filter() -> None:
    payload_filter = to_payload_filter(Filters())

    assert not payload_filter
    assert list(payload_filter.must) == [] and list(payload_filter.must_not) == []


def test_doc_ids_and_sources_become_match_any_on_their_payload_fields() -> None:
    payload_filter = to_payload_filter(Filters(doc_ids=["a", "b"], sources=["wiki"]))

    assert list(payload_filter.must) == [
        MatchAny("doc_id", ["a", "b"]),
        MatchAny("source", ["wiki"]),
    ]
    assert list(payload_filter.must_not) == []


def test_a_metadata_scalar_matches_that_one_value() -> None:
    payload_filter = to_payload_filter(Filters(metadata=MetadataFilters(filetype="pdf", ordinal=3)))

    assert list(payload_filter.must) == [MatchAny("filetype", ["pdf"]), MatchAny("ordinal", [3])]


def test_a_metadata_list_matches_any_of_its_values() -> None:
    payload_filter = to_payload_filter(Filters(metadata=MetadataFilters(filetype=["pdf", "md"])))

    assert list(payload_filter.must) == [MatchAny("filetype", ["pdf", "md"])]


@pytest.mark.parametrize("bound", ["gte", "gt", "lte", "lt"])
def test_a_metadata_range_keeps_each_bound_in_its_place(bound: str) -> None:
    pages = IntegerRange(**{bound: 7})
    payload_filter = to_payload_filter(Filters(metadata=MetadataFilters(pages=pages)))

    assert list(payload_filter.must) == [Range("pages", **{bound: 7})]


def test_a_range_with_both_ends_keeps_both() -> None:
    range_filter = IntegerRange(gt=1, lte=9)

    payload_filter = to_payload_filter(Filters(metadata=MetadataFilters(ordinal=range_filter)))

    assert list(payload_filter.must) == [Range("ordinal", gt=1, lte=9)]


def test_a_document_is_filtered_by_its_uri_or_by_its_source_and_path() -> None:
    """`source_path` is how keys that are not admin see a file: `<source>/<path>`."""
    full = to_payload_filter(Filters(metadata=MetadataFilters(uri=["file:///srv/a.md"])))
    shown = to_payload_filter(Filters(metadata=MetadataFilters(source_path="handbook/a.md")))

    assert list(full.must) == [MatchAny("uri", ["file:///srv/a.md"])]
    assert list(shown.must) == [MatchAny("public_uri", ["handbook/a.md"])]


def test_doc_ids_in_the_public_form_a_key_was_shown_match_the_public_form() -> None:
    """Keys that are not admin see a file's doc_id as `<source>/<path>`; a web or S3 document's
    public form is its location, so it is found on either field."""
    public = to_payload_filter(Filters(doc_ids=["handbook/a.md", "https://example.com/p"]))
    located = to_payload_filter(Filters(doc_ids=["file:///srv/a.md", "s3://bucket/b.md"]))

    assert list(public.must) == [MatchAny("public_uri", ["handbook/a.md", "https://example.com/p"])]
    assert list(located.must) == [MatchAny("doc_id", ["file:///srv/a.md", "s3://bucket/b.md"])]


def test_every_request_condition_must_hold_together() -> None:
    filters = Filters.model_validate(
        {
            "doc_ids": ["a"],
            "sources": ["wiki"],
            "metadata": {"filetype": ["pdf"], "pages": {"gte": 3}},
        }
    )

    payload_filter = to_payload_filter(filters)

    assert payload_filter == PayloadFilter(
        must=[
            MatchAny("doc_id", ["a"]),
            MatchAny("source", ["wiki"]),
            MatchAny("filetype", ["pdf"]),
            Range("pages", gte=3.0),
        ]
    )


# -- SearchOutcome -> hits -------------------------------------------------------------------


def test_a_hit_carries_every_payload_field_its_rank_and_score() -> None:
    payload = {
        "doc_id": "file:///docs/a.md",
        "uri": "file:///docs/a.md",
        "title": "Pumps",
        "text": "A centrifugal pump moves water.",
        "headings": ["Pumps", "Maintenance"],
        "pages": [2, 3],
        "element_types": ["Title", "NarrativeText"],
        "char_start": 10,
        "char_end": 42,
        "doc_version": "v1",
    }
    point = ScoredPoint("p1", 0.75, payload)

    [hit] = build_hits(_outcome([point]), "dense")

    assert hit.chunk_id == "p1"
    assert hit.doc_id == "file:///docs/a.md"
    assert hit.uri == "file:///docs/a.md"
    assert hit.title == "Pumps"
    assert hit.text == "A centrifugal pump moves water."
    assert hit.headings == ["Pumps", "Maintenance"]
    assert hit.pages == [2, 3]
    assert hit.element_types == ["Title", "NarrativeText"]
    assert (hit.char_start, hit.char_end) == (10, 42)
    assert (hit.rank, hit.score) == (1, 0.75)


def test_a_key_that_is_not_admin_sees_a_files_doc_id_without_the_servers_path() -> None:
    payload = {
        "doc_id": "file:///srv/bravo/secret.md",
        "uri": "file:///srv/bravo/secret.md",
        "source": "bravo",
        "path": "secret.md",
        "public_uri": "bravo/secret.md",
    }
    legacy = {k: v for k, v in payload.items() if k != "public_uri"}
    web = {"doc_id": "https://example.com/p", "uri": "https://example.com/p", "source": "web"}
    points = [ScoredPoint("p1", 0.7, payload), ScoredPoint("p2", 0.6, legacy)]
    points.append(ScoredPoint("p3", 0.5, web))

    shown = build_hits(_outcome(points), "dense", full_paths=False)
    full = build_hits(_outcome(points), "dense")

    assert [(h.doc_id, h.uri) for h in shown] == [
        ("bravo/secret.md", "bravo/secret.md"),
        ("bravo/secret.md", "bravo/secret.md"),
        ("https://example.com/p", "https://example.com/p"),
    ]
    assert [h.doc_id for h in full] == [
        "file:///srv/bravo/secret.md",
        "file:///srv/bravo/secret.md",
        "https://example.com/p",
    ]


def test_missing_payload_fields_get_empty_defaults() -> None:
    [hit] = build_hits(_outcome([ScoredPoint("p1", 0.5, {})]), "dense")

    assert (hit.doc_id, hit.uri, hit.title, hit.text) == ("", "", "", "")
    assert (hit.headings, hit.pages, hit.element_types) == ([], [], [])
    assert (hit.char_start, hit.char_end) == (0, 0)


def test_hits_keep_the_final_order_and_are_ranked_from_one() -> None:
    points = [_point("c", 0.9), _point("a", 0.5), _point("b", 0.1)]

    hits = build_hits(_outcome(points), "bm25")

    assert [(h.chunk_id, h.rank, h.score) for h in hits] == [
        ("c", 1, 0.9),
        ("a", 2, 0.5),
        ("b", 3, 0.1),
    ]


def test_hybrid_hits_report_each_candidate_lists_rank_and_score_and_the_fused_one() -> None:
    dense = [_point("a", 0.91), _point("b", 0.82), _point("c", 0.40)]
    sparse = [_point("b", 7.5), _point("d", 3.0)]
    fused = [_point("b", 0.032), _point("a", 0.016), _point("d", 0.015), _point("c", 0.015)]
    outcome = _outcome(fused[:3], first_stage=fused, dense=dense, sparse=sparse)

    hits = _by_id(build_hits(outcome, "hybrid"))

    assert set(hits) == {"a", "b", "d"}, "only final hits are returned"
    b, a, d = hits["b"].scores, hits["a"].scores, hits["d"].scores
    assert (b.dense_rank, b.dense, b.bm25_rank, b.bm25) == (2, 0.82, 1, 7.5)
    assert (b.fused_rank, b.fused) == (1, 0.032)
    assert (a.dense_rank, a.dense, a.fused_rank, a.fused) == (1, 0.91, 2, 0.016)
    assert a.bm25 is None and a.bm25_rank is None, "a was no BM25 candidate"
    assert (d.bm25_rank, d.bm25, d.fused_rank) == (2, 3.0, 3)
    assert d.dense is None and d.dense_rank is None, "d was no dense candidate"
    assert all(h.scores.rerank is None and h.scores.rerank_rank is None for h in hits.values())


@pytest.mark.parametrize(("mode", "score_field"), [("dense", "dense"), ("bm25", "bm25")])
def test_a_single_mode_reports_its_first_stage_as_that_modes_scores(
    mode: str, score_field: str
) -> None:
    points = [_point("a", 0.9), _point("b", 0.4)]

    hits = _by_id(build_hits(_outcome(points), mode))

    other = "bm25" if score_field == "dense" else "dense"
    for rank, point_id, score in [(1, "a", 0.9), (2, "b", 0.4)]:
        scores = hits[point_id].scores.model_dump()
        assert (scores[score_field], scores[f"{score_field}_rank"]) == (score, rank)
        assert scores[other] is None and scores[f"{other}_rank"] is None
        assert scores["fused"] is None and scores["fused_rank"] is None, "fusion is hybrid only"


def test_reranked_hits_report_rerank_scores_ranked_by_rerank_score() -> None:
    first_stage = [_point("a", 0.9), _point("b", 0.8), _point("c", 0.7), _point("d", 0.6)]
    # The reranker scored the first three; the final (blended) order differs from the
    # rerank order, and "d", below the rerank pool, keeps its first-stage score.
    final = [_point("b", 0.95), _point("a", 0.90), _point("c", 0.20), _point("d", 0.6)]
    rerank_scores = {"a": 2.5, "b": 1.0, "c": -3.0}
    outcome = _outcome(final, first_stage=first_stage, rerank_scores=rerank_scores)

    hits = build_hits(outcome, "dense")

    assert [(h.chunk_id, h.rank, h.score) for h in hits] == [
        ("b", 1, 0.95),
        ("a", 2, 0.90),
        ("c", 3, 0.20),
        ("d", 4, 0.6),
    ]
    by_id = _by_id(hits)
    assert (by_id["a"].scores.rerank, by_id["a"].scores.rerank_rank) == (2.5, 1)
    assert (by_id["b"].scores.rerank, by_id["b"].scores.rerank_rank) == (1.0, 2)
    assert (by_id["c"].scores.rerank, by_id["c"].scores.rerank_rank) == (-3.0, 3)
    assert by_id["d"].scores.rerank is None and by_id["d"].scores.rerank_rank is None
    assert (by_id["b"].scores.dense_rank, by_id["b"].scores.dense) == (2, 0.8), (
        "stage scores stay the first stage's"
    )


def test_no_hits_give_no_hits() -> None:
    assert build_hits(_outcome([]), "hybrid") == []
