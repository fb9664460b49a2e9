"""What every `VectorStore` must do, one mixin per capability (after Haystack's
`haystack/testing/document_store.py`). A test class per store subclasses them all and provides
a `store` fixture; each mixin names the Protocol methods it exercises in `COVERS`, and
`tests/test_store_contract.py` checks that together they cover the whole Protocol, so a method
added to it without a contract test fails."""

from __future__ import annotations

import uuid
from typing import ClassVar

import numpy as np
import pytest

from index.contracts import (
    Bm25Params,
    CollectionNotFoundError,
    CollectionSpec,
    HybridOptions,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    Range,
    RetrievalTuning,
    SearchRequest,
    SparseVector,
    VectorStore,
)

DIM = 8


def new_spec(prefix: str = "contract") -> CollectionSpec:
    """A collection of its own for each test: stores are shared between a class's tests."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}__v1"
    return CollectionSpec(name, "test-model", DIM, Bm25Params(avg_doc_length=3), tenants=True)


def vector(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    values = rng.normal(size=DIM).astype(np.float32)
    return values / np.linalg.norm(values)


def points(n: int, start: int = 0) -> list[IndexedPoint]:
    """Point i: document `doc-{i % 3}`, ordinal i, term i (and term 999 for even i)."""
    made = []
    for i in range(start, start + n):
        terms = [i, 999] if i % 2 == 0 else [i]
        payload = {
            "doc_id": f"doc-{i % 3}",
            "ordinal": i,
            "text": f"point {i}",
            "tenant": "acme",
            "source": "s",
        }
        made.append(
            IndexedPoint(
                str(uuid.UUID(int=i + 1)),
                vector(i),
                SparseVector(terms, [1.0] * len(terms)),
                payload,
            )
        )
    return made


def filled(store: VectorStore, n: int = 12) -> CollectionSpec:
    spec = new_spec()
    store.create_collection(spec)
    store.upsert(spec.name, points(n))
    return spec


class CollectionsContract:
    COVERS: ClassVar[set[str]] = {
        "create_collection",
        "collection_spec",
        "list_collections",
        "drop_collection",
        "record_tuning",
    }

    def test_a_created_collection_is_listed_with_its_spec(self, store: VectorStore) -> None:
        spec = new_spec()
        store.create_collection(spec)
        assert spec.name in store.list_collections()
        assert store.collection_spec(spec.name) == spec
        assert store.collection_spec(f"missing-{uuid.uuid4().hex[:6]}__v1") is None

    def test_a_dropped_collection_is_gone(self, store: VectorStore) -> None:
        spec = filled(store)
        store.drop_collection(spec.name)
        assert spec.name not in store.list_collections()
        assert store.collection_spec(spec.name) is None

    def test_tuning_is_recorded_in_the_spec_and_cleared(self, store: VectorStore) -> None:
        spec = new_spec()
        store.create_collection(spec)
        tuning = RetrievalTuning(HybridOptions("rrf", 30, (1.0, 2.0), 100, 0.5), "2026-12-01")
        store.record_tuning(spec.name, tuning)
        recorded = store.collection_spec(spec.name)
        assert recorded is not None and recorded.tuning == tuning
        store.record_tuning(spec.name, None)
        cleared = store.collection_spec(spec.name)
        assert cleared is not None and cleared.tuning is None


class AliasesContract:
    COVERS: ClassVar[set[str]] = {"set_alias", "resolve_alias", "list_aliases"}

    def test_an_alias_names_one_collection_and_moves(self, store: VectorStore) -> None:
        first, second = new_spec(), new_spec()
        for spec in (first, second):
            store.create_collection(spec)
        alias = f"alias-{uuid.uuid4().hex[:8]}"
        assert store.resolve_alias(alias) is None
        store.set_alias(alias, first.name)
        assert store.resolve_alias(alias) == first.name
        assert store.list_aliases()[alias] == first.name
        store.set_alias(alias, second.name)
        assert store.resolve_alias(alias) == second.name


class PointsContract:
    COVERS: ClassVar[set[str]] = {
        "upsert",
        "count",
        "delete",
        "existing_ids",
        "fetch",
        "distinct_values",
        "write_stamp",
    }

    def test_upserted_points_are_counted_and_filtered(self, store: VectorStore) -> None:
        spec = filled(store)
        assert store.count(spec.name) == 12
        assert store.count(spec.name, PayloadFilter(must=[MatchAny("doc_id", ["doc-0"])])) == 4
        assert store.count(spec.name, PayloadFilter(must=[Range("ordinal", gte=10)])) == 2
        store.upsert(spec.name, points(3))  # the same ids again: replaced, not added
        assert store.count(spec.name) == 12

    def test_delete_by_filter_removes_exactly_the_matches(self, store: VectorStore) -> None:
        spec = filled(store)
        store.delete(spec.name, PayloadFilter(must=[MatchAny("doc_id", ["doc-1"])]))
        assert store.count(spec.name) == 8
        assert store.count(spec.name, PayloadFilter(must=[MatchAny("doc_id", ["doc-1"])])) == 0

    def test_existing_ids_and_fetch_answer_for_held_points_only(self, store: VectorStore) -> None:
        spec = filled(store, 4)
        held = [p.id for p in points(4)]
        missing = str(uuid.UUID(int=10_000))
        assert store.existing_ids(spec.name, [*held[:2], missing]) == set(held[:2])
        fetched = {p.id: p for p in store.fetch(spec.name, [held[0], missing], dense=True)}
        assert set(fetched) == {held[0]}
        assert fetched[held[0]].payload["ordinal"] == 0
        got = fetched[held[0]].dense
        assert got is not None and np.allclose(got, vector(0), atol=1e-5)
        assert store.fetch(spec.name, [held[1]])[0].dense is None

    def test_distinct_values_counts_a_fields_values(self, store: VectorStore) -> None:
        spec = filled(store)
        assert store.distinct_values(spec.name, "doc_id") == 3

    def test_the_write_stamp_changes_with_every_write(self, store: VectorStore) -> None:
        spec = filled(store)
        stamps = [store.write_stamp(spec.name)]
        assert store.write_stamp(spec.name) == stamps[0], "reading changes nothing"
        store.upsert(spec.name, points(1, start=50))
        stamps.append(store.write_stamp(spec.name))
        store.delete(spec.name, PayloadFilter(must=[MatchAny("doc_id", ["doc-2"])]))
        stamps.append(store.write_stamp(spec.name))
        store.record_tuning(spec.name, RetrievalTuning(HybridOptions("rrf"), "2026-12-01"))
        stamps.append(store.write_stamp(spec.name))
        assert len(set(stamps)) == 4, stamps

    def test_a_missing_collection_has_no_write_stamp(self, store: VectorStore) -> None:
        with pytest.raises(CollectionNotFoundError):
            store.write_stamp(f"missing-{uuid.uuid4().hex[:6]}__v1")


class ScanContract:
    COVERS: ClassVar[set[str]] = {"scroll", "read_points"}

    def test_scroll_yields_every_point_with_the_fields_asked(self, store: VectorStore) -> None:
        spec = filled(store, 30)
        scrolled = dict(store.scroll(spec.name, ["doc_id"], page_size=7))
        assert set(scrolled) == {p.id for p in points(30)}
        assert all(set(payload) == {"doc_id"} for payload in scrolled.values())

    def test_read_points_pages_payloads_and_bm25_vectors(self, store: VectorStore) -> None:
        spec = filled(store, 30)
        pages = list(store.read_points(spec.name, page_size=8))
        assert all(len(page) <= 8 for page in pages)
        read = {p.id: p for page in pages for p in page}
        assert set(read) == {p.id for p in points(30)}
        first = read[points(1)[0].id]
        assert sorted(first.sparse.indices) == [0, 999]
        assert first.payload["text"] == "point 0"

    def test_a_scan_left_half_read_leaves_the_store_usable(self, store: VectorStore) -> None:
        spec = filled(store, 30)
        scan = store.scroll(spec.name, ["doc_id"], page_size=4)
        next(iter(scan))
        del scan
        assert store.count(spec.name) == 30
        assert len(dict(store.scroll(spec.name, ["doc_id"]))) == 30


class SearchContract:
    COVERS: ClassVar[set[str]] = {"search"}

    def test_dense_search_finds_the_nearest_point_first(self, store: VectorStore) -> None:
        spec = filled(store)
        request = SearchRequest(mode="dense", limit=3, candidate_pool=3, dense=vector(5))
        hits = store.search(spec.name, request).hits
        assert hits[0].id == points(6)[5].id and hits[0].payload["ordinal"] == 5
        assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score

    def test_bm25_search_finds_the_points_with_the_term(self, store: VectorStore) -> None:
        spec = filled(store)
        request = SearchRequest(
            mode="bm25", limit=20, candidate_pool=20, sparse=SparseVector([999], [1.0])
        )
        hits = store.search(spec.name, request).hits
        assert {h.payload["ordinal"] for h in hits} == {0, 2, 4, 6, 8, 10}

    def test_hybrid_search_answers_both_candidate_lists_within_the_filter(
        self, store: VectorStore
    ) -> None:
        spec = filled(store)
        request = SearchRequest(
            mode="hybrid",
            limit=5,
            candidate_pool=5,
            dense=vector(4),
            sparse=SparseVector([999], [1.0]),
            filter=PayloadFilter(must=[MatchAny("doc_id", ["doc-1"])]),
        )
        result = store.search(spec.name, request)
        assert result.hits == []
        assert result.dense and result.sparse
        assert result.dense[0].id == points(5)[4].id
        ordinals = {p.payload.get("ordinal") for p in (*result.dense, *result.sparse)}
        assert ordinals <= {1, 4, 7, 10}, "every candidate within the filter"
        assert {p.id for p in result.sparse} == {points(11)[i].id for i in (4, 10)}


CONTRACTS: tuple[type, ...] = (
    CollectionsContract,
    AliasesContract,
    PointsContract,
    ScanContract,
    SearchContract,
)
