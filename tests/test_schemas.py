"""What the API accepts and answers: request validation and the response model."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sluice_client.request import (
    CURSOR_PATTERN,
    Filters,
    FusionRequest,
    IntegerRange,
    MetadataFilters,
    RetrieveRequest,
)
from sluice_client.response import Hit, IndexInfo, RetrieveResponse, StageScores
from tests.conftest import examples


def _valid(**fields: Any) -> RetrieveRequest:
    return RetrieveRequest.model_validate({"query": "how do pumps work?", **fields})


def _rejected(**fields: Any) -> ValidationError:
    with pytest.raises(ValidationError) as error:
        RetrieveRequest.model_validate({"query": "how do pumps work?", **fields})
    return error.value


# -- defaults --------------------------------------------------------------------------------


def test_a_query_alone_is_a_hybrid_request_with_every_other_choice_left_to_the_server() -> None:
    request = RetrieveRequest(query="pumps")

    assert request.mode == "hybrid"
    assert request.top_k is None and request.candidate_pool is None and request.rerank is None
    assert request.filters == Filters()
    assert request.filters.metadata == MetadataFilters()
    assert request.fusion == FusionRequest()
    assert (request.fusion.method, request.fusion.rrf_k, request.fusion.weights) == (
        None,
        None,
        None,
    )


# -- query -----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", " ", "\t\n  "])
def test_an_empty_or_blank_query_is_rejected(query: str) -> None:
    with pytest.raises(ValidationError):
        RetrieveRequest(query=query)


@given(
    query=st.text(
        alphabet=st.sampled_from(" \t\n\v\f\r\x1c\x1f\x85\xa0\u1680\u2007\u2028\u3000\ufeffa"),
        min_size=1,
        max_size=4,
    )
)
def test_the_schema_and_the_server_agree_on_what_is_blank(query: str) -> None:
    """A client validating against the published schema refuses exactly what the server does."""
    schema = RetrieveRequest.model_json_schema()["properties"]["query"]
    by_schema = jsonschema.Draft202012Validator(schema).is_valid(query)
    try:
        RetrieveRequest(query=query)
        by_server = True
    except ValidationError:
        by_server = False
    assert by_schema == by_server


def test_a_query_may_be_up_to_4000_characters() -> None:
    assert RetrieveRequest(query="x" * 4000).query == "x" * 4000
    with pytest.raises(ValidationError):
        RetrieveRequest(query="x" * 4001)


def test_a_query_keeps_its_surrounding_whitespace() -> None:
    assert RetrieveRequest(query="  pumps ").query == "  pumps "


# -- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [("top_k", 1, 200), ("candidate_pool", 1, 1000)],
)
def test_numeric_request_fields_accept_their_bounds_and_reject_beyond(
    field: str, low: int, high: int
) -> None:
    assert getattr(_valid(**{field: low}), field) == low
    assert getattr(_valid(**{field: high}), field) == high
    _rejected(**{field: low - 1})
    _rejected(**{field: high + 1})


@given(st.integers().filter(lambda k: not 1 <= k <= 200))
def test_top_k_out_of_range_is_always_rejected(top_k: int) -> None:
    error = _rejected(top_k=top_k)

    assert [e["loc"] for e in error.errors()] == [("top_k",)]


@given(st.integers(min_value=1, max_value=200))
def test_top_k_in_range_is_always_accepted(top_k: int) -> None:
    assert _valid(top_k=top_k).top_k == top_k


def test_rrf_k_is_between_1_and_1000() -> None:
    assert FusionRequest(rrf_k=1).rrf_k == 1
    assert FusionRequest(rrf_k=1000).rrf_k == 1000
    for rrf_k in (0, 1001):
        with pytest.raises(ValidationError):
            FusionRequest(rrf_k=rrf_k)


# -- mode, fusion, weights -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_each_search_mode_is_accepted(mode: str) -> None:
    assert _valid(mode=mode).mode == mode


@pytest.mark.parametrize("mode", ["fuzzy", "HYBRID", "", "sparse"])
def test_an_unknown_mode_is_rejected(mode: str) -> None:
    _rejected(mode=mode)


@pytest.mark.parametrize("method", ["rrf", "dbsf", "minmax"])
def test_each_fusion_method_is_accepted(method: str) -> None:
    assert _valid(fusion={"method": method}).fusion.method == method


def test_an_unknown_fusion_method_is_rejected() -> None:
    _rejected(fusion={"method": "borda"})


def test_fusion_settings_are_accepted_with_any_mode() -> None:
    request = _valid(mode="dense", fusion={"method": "dbsf", "weights": [1, 2]})

    assert request.fusion.method == "dbsf" and request.fusion.weights == [1.0, 2.0]


@given(
    st.lists(st.floats(min_value=0, max_value=10), min_size=2, max_size=2).filter(
        lambda w: sum(w) > 0
    )
)
def test_weights_between_0_and_10_not_both_0_are_accepted(weights: list[float]) -> None:
    assert FusionRequest(weights=weights).weights == weights


@given(
    st.one_of(
        st.tuples(
            st.floats(allow_nan=True).filter(lambda w: not 0 <= w <= 10),
            st.floats(min_value=0, max_value=10),
        ),
        st.tuples(
            st.floats(min_value=0, max_value=10),
            st.floats(allow_nan=True).filter(lambda w: not 0 <= w <= 10),
        ),
        st.just((0.0, 0.0)),
    ).map(list)
)
def test_weights_outside_0_to_10_or_both_0_are_rejected(weights: list[float]) -> None:
    with pytest.raises(ValidationError):
        FusionRequest(weights=weights)


@pytest.mark.parametrize("weights", [[1], [1, 2, 3], []])
def test_weights_are_exactly_a_dense_and_a_bm25_weight(weights: list[float]) -> None:
    _rejected(fusion={"weights": weights})


# -- the schema and the server agree --------------------------------------------------------

REQUEST_SCHEMA = jsonschema.Draft202012Validator(RetrieveRequest.model_json_schema())


def _agree(body: dict[str, Any]) -> None:
    """A client validating `body` against the published schema and the server parsing it (as
    JSON, as it arrives) say the same."""
    by_schema = REQUEST_SCHEMA.is_valid(body)
    try:
        RetrieveRequest.model_validate_json(json.dumps(body))
        by_server = True
    except ValidationError:
        by_server = False
    assert by_schema == by_server, body


NUMBERS = st.sampled_from([0, 0.0, -0.0, 1, 2.5, 10, 10.0, 10.5, -1, 1e-300, 1000, 1001, 5.0])


@given(
    fusion=st.fixed_dictionaries(
        {},
        optional={
            "method": st.none() | st.sampled_from(["rrf", "dbsf", "minmax", "RRF", ""]),
            "rrf_k": st.none() | NUMBERS | st.booleans() | st.just("60"),
            "weights": st.none() | st.lists(NUMBERS, max_size=3) | st.just("1,1"),
            "other": st.just(1),
        },
    )
)
def test_the_schema_and_the_server_agree_on_fusion_options(fusion: dict[str, Any]) -> None:
    """Before, the schema's "not both 0" applied to the field and refused `weights: null`,
    which the server takes as "unset"."""
    _agree({"query": "pumps", "fusion": fusion})


@given(
    cursor=st.none()
    | st.text(max_size=60)
    | st.from_regex(CURSOR_PATTERN, fullmatch=True)
    | st.from_regex(CURSOR_PATTERN).map(lambda token: token[:2048])
    | st.just("x" * 2049)
)
def test_the_schema_and_the_server_agree_on_what_a_cursor_looks_like(cursor: str | None) -> None:
    """Whether this server signed it is the server's to say (400 `invalid_cursor`); its shape
    the schema states, in a way every regex dialect reads alike."""
    _agree({"query": "pumps", "cursor": cursor})


def test_a_cursor_followed_by_a_newline_is_read_alike_by_every_dialect() -> None:
    _agree({"query": "pumps", "cursor": "eyJ2IjoyfQ." + "A" * 43 + "\n"})


# -- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"filetype": "pdf"}, MetadataFilters(filetype="pdf")),
        ({"ordinal": 3}, MetadataFilters(ordinal=3)),
        ({"filetype": ["pdf", "md"]}, MetadataFilters(filetype=["pdf", "md"])),
        ({"pages": {"gte": 3}}, MetadataFilters(pages=IntegerRange(gte=3))),
        ({"pages": {"gt": 1, "lt": 9}}, MetadataFilters(pages=IntegerRange(gt=1, lt=9))),
        ({"pages": [1, 2**53 - 1]}, MetadataFilters(pages=[1, 2**53 - 1])),
        (
            {"source_path": ["handbook/a.md", "wiki/b.md"]},
            MetadataFilters(source_path=["handbook/a.md", "wiki/b.md"]),
        ),
        ({"uri": "file:///srv/a.md"}, MetadataFilters(uri="file:///srv/a.md")),
    ],
)
def test_metadata_filter_shapes_accepted(metadata: dict[str, Any], expected: object) -> None:
    assert _valid(filters={"metadata": metadata}).filters.metadata == expected


def test_a_metadata_range_value_is_a_range_not_a_scalar() -> None:
    condition = _valid(filters={"metadata": {"pages": {"lte": 4}}}).filters.metadata.pages

    assert isinstance(condition, IntegerRange) and condition.lte == 4


@pytest.mark.parametrize(
    "metadata",
    [
        {"text": "secret"},
        {"tenant": "acme"},
        {"doc_id": "a"},
        {"headings.level_2": "Setup"},
        {"pages": {"near": 3}},
        {"pages": {"gte": "three"}},
        {"pages": {}},
        {"pages": 1.5},
        {"pages": [1.5, 2.5]},
        {"pages": True},
        {"pages": [True, False]},
        {"pages": 2**63},
        {"pages": {"gte": -(2**53)}},
        {"pages": 2**53},
        {"pages": "3"},
        {"filetype": 1},
        {"filetype": ["md", 1]},
        {"filetype": []},
        {"filetype": ["x"] * 101},
        {"filetype": ""},
        {"filetype": "x" * 1025},
        {"filetype": "\ud800"},
        {"filetype": {"pdf": True}},
        {"filetype": [["pdf"]]},
        {"uri": ["handbook/a.md", "file:///srv/a.md"]},
        {"uri": "handbook/a.md"},
        {"source_path": "file:///srv/a.md"},
        {"source_path": "no-slash"},
    ],
)
def test_metadata_filter_shapes_rejected(metadata: dict[str, Any]) -> None:
    _rejected(filters={"metadata": metadata})


@pytest.mark.parametrize(
    "fields",
    [
        {"top_k": "10"},
        {"top_k": 5.5},
        {"top_k": True},
        {"candidate_pool": "200"},
        {"rerank": 1},
        {"rerank": "true"},
        {"rerank_blend": "0.5"},
        {"fusion": {"rrf_k": 60.5}},
        {"filters": {"metadata": {"pages": "3"}}},
        {"query": 42},
    ],
)
def test_values_of_the_wrong_type_are_rejected_not_coerced(fields: dict[str, Any]) -> None:
    _rejected(**fields)


def test_a_whole_number_written_with_a_point_is_an_integer_as_json_schema_says() -> None:
    assert _valid(top_k=5.0).top_k == 5
    assert _valid(filters={"metadata": {"pages": [3.0]}}).filters.metadata.pages == [3]


def test_doc_ids_and_sources_are_lists_of_bounded_length() -> None:
    assert _valid(filters={"doc_ids": ["d"] * 1000}).filters.doc_ids == ["d"] * 1000
    assert _valid(filters={"sources": ["s"] * 100}).filters.sources == ["s"] * 100
    _rejected(filters={"doc_ids": ["d"] * 1001})
    _rejected(filters={"sources": ["s"] * 101})
    _rejected(filters={"doc_ids": "just-one"})
    _rejected(filters={"doc_ids": []})
    _rejected(filters={"tenants": ["not a tenant"]})


@pytest.mark.parametrize(
    "fields",
    [
        {"unknown": 1},
        {"filters": {"tags": ["x"]}},
        {"fusion": {"alpha": 0.5}},
        {"filters": {"metadata": {"pages": {"gte": 1, "step": 2}}}},
    ],
)
def test_unknown_fields_are_rejected_at_every_level(fields: dict[str, Any]) -> None:
    _rejected(**fields)


# -- any valid request round-trips -----------------------------------------------------------

_keywords = st.text(min_size=1, max_size=10)
_keyword_match = _keywords | st.lists(_keywords, min_size=1, max_size=4)
_ints = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
_ranges = (
    st.fixed_dictionaries({}, optional={bound: _ints for bound in ("gte", "gt", "lte", "lt")})
    .filter(bool)
    .map(lambda bounds: IntegerRange(**bounds))
)
_integer_match = st.one_of(_ints, st.lists(_ints, min_size=1, max_size=4), _ranges)
_uris = st.lists(st.from_regex(r"file:///[a-z]{1,8}\.md", fullmatch=True), min_size=1, max_size=3)
_weights = st.floats(min_value=0, max_value=10)

_requests = st.builds(
    RetrieveRequest,
    query=st.text(min_size=1, max_size=50).filter(str.strip),
    top_k=st.none() | st.integers(min_value=1, max_value=200),
    mode=st.sampled_from(["hybrid", "dense", "bm25"]),
    filters=st.builds(
        Filters,
        doc_ids=st.none() | st.lists(_keywords, min_size=1, max_size=5),
        sources=st.none() | st.lists(_keywords, min_size=1, max_size=5),
        metadata=st.builds(
            MetadataFilters,
            filetype=st.none() | _keyword_match,
            element_types=st.none() | _keyword_match,
            doc_version=st.none() | _keyword_match,
            uri=st.none() | _uris,
            pages=st.none() | _integer_match,
            ordinal=st.none() | _integer_match,
        ),
    ),
    candidate_pool=st.none() | st.integers(min_value=1, max_value=1000),
    fusion=st.builds(
        FusionRequest,
        method=st.none() | st.sampled_from(["rrf", "dbsf", "minmax"]),
        rrf_k=st.none() | st.integers(min_value=1, max_value=1000),
        weights=st.none() | st.lists(_weights, min_size=2, max_size=2).filter(lambda w: sum(w) > 0),
    ),
    rerank=st.none() | st.booleans(),
)


@settings(max_examples=examples(200, 50))
@given(_requests)
def test_any_valid_request_round_trips_through_json(request: RetrieveRequest) -> None:
    # Unset is left out, as a client sends it (a range bound may not be null).
    assert (
        RetrieveRequest.model_validate_json(request.model_dump_json(exclude_none=True)) == request
    )


@given(_requests)
def test_any_valid_request_round_trips_through_a_dict(request: RetrieveRequest) -> None:
    assert RetrieveRequest.model_validate(request.model_dump(exclude_none=True)) == request


# -- response model --------------------------------------------------------------------------


def _hit(**scores: Any) -> Hit:
    return Hit(
        chunk_id="3f2a",
        doc_id="file:///docs/a.md",
        uri="file:///docs/a.md",
        title="Pumps",
        text="A pump moves water.",
        headings=["Pumps"],
        pages=[1],
        element_types=["NarrativeText"],
        char_start=0,
        char_end=19,
        rank=1,
        score=0.8,
        relative_score=1.0,
        scores=StageScores(**scores),
    )


def test_stage_scores_are_all_absent_unless_given() -> None:
    assert all(value is None for value in StageScores().model_dump().values())


def test_a_response_serialises_every_hit_field_and_round_trips() -> None:
    response = RetrieveResponse(
        query="pumps",
        mode="hybrid",
        hits=[_hit(dense=0.8, dense_rank=1, fused=0.03, fused_rank=1)],
        index=IndexInfo(
            alias="docs", collection="docs__v1", embedding_model="stub", deployment="here"
        ),
        timings_ms={"search_ms": 1.5},
    )

    body = response.model_dump(mode="json")

    assert body["degraded"] == []
    assert body["request_id"] is None
    assert set(body["hits"][0]) == {
        "chunk_id",
        "doc_id",
        "uri",
        "title",
        "text",
        "headings",
        "pages",
        "element_types",
        "char_start",
        "char_end",
        "metadata",
        "rank",
        "score",
        "scores",
        "relative_score",
        "highlights",
        "context_text",
        "context_highlights",
        "highlights_note",
    }
    assert body["hits"][0]["scores"]["dense_rank"] == 1
    assert body["hits"][0]["scores"]["bm25"] is None
    assert body["index"]["collection"] == "docs__v1"
    assert RetrieveResponse.model_validate_json(response.model_dump_json()) == response


def test_a_response_without_an_index_says_so() -> None:
    response = RetrieveResponse(query="q", mode="dense", hits=[], index=None, timings_ms={})

    assert response.model_dump()["index"] is None


def test_a_response_requires_an_explicit_index_entry() -> None:
    with pytest.raises(ValidationError):
        RetrieveResponse.model_validate(
            {"query": "q", "mode": "dense", "hits": [], "timings_ms": {}}
        )


def test_a_retrievers_metadata_carry_the_sources_fields_and_the_hits_win_a_shared_name() -> None:
    from sluice_client.hits import hit_metadata

    hit = _hit().model_copy(update={"metadata": {"product": "pump-200", "uri": "row 7"}})
    metadata = hit_metadata(hit)
    assert metadata["product"] == "pump-200" and metadata["uri"] == hit.uri != "row 7"
