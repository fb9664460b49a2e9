"""`PayloadFilter` translated for both backends, checked by the points each real store matches."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from index.contracts import (
    DENSE_VECTOR,
    Bm25Params,
    CollectionSpec,
    Condition,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    Range,
    SearchRequest,
    SparseVector,
)
from index.store.embedded import EdgeVectorStore
from index.store.filters import to_client_filter, to_edge_filter

COLLECTION = "filters__v1"
ORDINALS = range(5)
ALL = set(ORDINALS)


def _payload(i: int) -> dict[str, object]:
    return {
        "doc_id": f"d{i}",
        "source": "wiki" if i < 3 else "blog",
        "filetype": "pdf" if i % 2 == 0 else "md",
        "ordinal": i,
        "pages": [i, i + 1],
        "element_types": ["Title", "Table"] if i == 4 else ["NarrativeText"],
        "flag": i % 2 == 0,
    }


def _vector(i: int) -> list[float]:
    return [1.0, 0.1 * i, 0.0, 0.0]


Matcher = Callable[[PayloadFilter], set[int]]


def _edge(tmp_path: Path) -> Iterator[Matcher]:
    store = EdgeVectorStore(tmp_path / "edge")
    store.create_collection(CollectionSpec(COLLECTION, "stub", 4, Bm25Params()))
    store.upsert(
        COLLECTION,
        [
            IndexedPoint(
                str(uuid.UUID(int=i + 1)),
                np.asarray(_vector(i), dtype=np.float32),
                SparseVector([7], [1.0]),
                _payload(i),
            )
            for i in ORDINALS
        ],
    )

    def matched(payload_filter: PayloadFilter) -> set[int]:
        request = SearchRequest(
            mode="dense",
            limit=50,
            candidate_pool=50,
            dense=np.asarray([1.0, 0.0, 0.0, 0.0], dtype=np.float32),
            filter=payload_filter,
        )
        hits = store.search(COLLECTION, request).hits
        assert store.count(COLLECTION, payload_filter) == len(hits)
        return {int(hit.payload["ordinal"]) for hit in hits}

    yield matched
    store.close()


def _client() -> Iterator[Matcher]:
    client = QdrantClient(":memory:")
    client.create_collection(
        COLLECTION,
        vectors_config={DENSE_VECTOR: models.VectorParams(size=4, distance=models.Distance.COSINE)},
    )
    client.upsert(
        COLLECTION,
        [
            models.PointStruct(
                id=str(uuid.UUID(int=i + 1)), vector={DENSE_VECTOR: _vector(i)}, payload=_payload(i)
            )
            for i in ORDINALS
        ],
        wait=True,
    )

    def matched(payload_filter: PayloadFilter) -> set[int]:
        records, _ = client.scroll(
            COLLECTION, scroll_filter=to_client_filter(payload_filter), limit=50
        )
        return {int((record.payload or {})["ordinal"]) for record in records}

    yield matched
    client.close()


@pytest.fixture(scope="module", params=["edge", "client"])
def matched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matcher]:
    """The points a filter selects, by ordinal; filters never change the stores, so the stores
    are built once per backend."""
    if request.param == "edge":
        yield from _edge(tmp_path_factory.mktemp("filters"))
    else:
        yield from _client()


def _must(*conditions: Condition) -> PayloadFilter:
    return PayloadFilter(must=list(conditions))


# -- no filter -------------------------------------------------------------------------------


def test_an_empty_filter_is_no_filter_for_either_backend() -> None:
    assert to_client_filter(PayloadFilter()) is None
    assert to_client_filter(None) is None
    assert to_edge_filter(PayloadFilter()) is None
    assert to_edge_filter(None) is None


def test_an_empty_filter_matches_every_point(matched: Matcher) -> None:
    assert matched(PayloadFilter()) == ALL


# -- match -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (MatchAny("doc_id", ["d1"]), {1}),
        (MatchAny("doc_id", ["d1", "d3"]), {1, 3}),
        (MatchAny("doc_id", ["nowhere"]), set()),
        (MatchAny("source", ["blog"]), {3, 4}),
        (MatchAny("ordinal", [2]), {2}),
        (MatchAny("ordinal", [0, 4, 9]), {0, 4}),
    ],
    ids=["one-string", "strings", "no-match", "source", "one-integer", "integers"],
)
def test_match_any_selects_points_whose_field_is_one_of_the_values(
    matched: Matcher, condition: MatchAny, expected: set[int]
) -> None:
    assert matched(_must(condition)) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (MatchAny("pages", [2]), {1, 2}),
        (MatchAny("pages", [1, 5]), {0, 1, 4}),
        (MatchAny("element_types", ["Table"]), {4}),
    ],
    ids=["one-integer", "integers", "string"],
)
def test_match_any_on_a_list_field_selects_points_containing_a_value(
    matched: Matcher, condition: MatchAny, expected: set[int]
) -> None:
    assert matched(_must(condition)) == expected


@pytest.mark.xfail(
    strict=True,
    reason="bug: a boolean value is matched as the integer 1 by the embedded engine "
    "(nothing matches) and is rejected by qdrant-client's MatchAny (ValidationError)",
)
def test_a_boolean_value_selects_points_with_that_value(matched: Matcher) -> None:
    assert matched(_must(MatchAny("flag", [True]))) == {0, 2, 4}


# -- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"gte": 2}, {2, 3, 4}),
        ({"gt": 2}, {3, 4}),
        ({"lte": 2}, {0, 1, 2}),
        ({"lt": 2}, {0, 1}),
        ({"gt": 1, "lt": 4}, {2, 3}),
        ({"gte": 1, "lte": 3}, {1, 2, 3}),
        ({"gte": 1.5}, {2, 3, 4}),
        ({"gt": 3, "lt": 1}, set()),
        ({}, ALL),
    ],
    ids=["gte", "gt", "lte", "lt", "gt-lt", "gte-lte", "fractional", "empty-interval", "unbounded"],
)
def test_a_range_selects_points_within_each_bound(
    matched: Matcher, bounds: dict[str, float], expected: set[int]
) -> None:
    assert matched(_must(Range("ordinal", **bounds))) == expected


def test_a_range_on_a_list_field_selects_points_with_any_value_inside(matched: Matcher) -> None:
    assert matched(_must(Range("pages", gte=5))) == {4}
    assert matched(_must(Range("pages", lt=1))) == {0}


def test_a_range_on_a_missing_field_matches_nothing(matched: Matcher) -> None:
    assert matched(_must(Range("missing", gte=0))) == set()


# -- must and must_not -----------------------------------------------------------------------


def test_all_must_conditions_have_to_hold(matched: Matcher) -> None:
    both = _must(MatchAny("source", ["wiki"]), MatchAny("filetype", ["pdf"]))

    assert matched(both) == {0, 2}


def test_must_not_excludes_points_matching_any_of_its_conditions(matched: Matcher) -> None:
    excluded = PayloadFilter(must_not=[MatchAny("doc_id", ["d1"]), Range("ordinal", gte=4)])

    assert matched(excluded) == {0, 2, 3}


def test_must_and_must_not_combine(matched: Matcher) -> None:
    # The writer's "other versions of this document" shape.
    combined = PayloadFilter(
        must=[MatchAny("source", ["wiki"])], must_not=[MatchAny("filetype", ["pdf"])]
    )

    assert matched(combined) == {1}


def test_a_must_not_only_filter_is_kept_for_both_backends() -> None:
    payload_filter = PayloadFilter(must_not=[MatchAny("doc_id", ["d1"])])

    client_filter = to_client_filter(payload_filter)
    assert client_filter is not None and client_filter.must_not and not client_filter.must
    assert to_edge_filter(payload_filter) is not None
