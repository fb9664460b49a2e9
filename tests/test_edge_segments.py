"""The embedded store's segments: the appendable one is optimised once it is full, so an ingest's
RAM is bounded by one segment, not by the corpus (docs/benchmarks.md, "Ingest at scale").

The engine builds a segment only past its own indexing threshold (10,000 KB of dense vectors),
so the vectors here are 4,096-d: `segment_kb=10_000` is 625 points."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from index.bm25 import Bm25Params, SparseVector
from index.edge_store import EdgeVectorStore
from index.types import CollectionSpec, IndexedPoint, SearchRequest

DIM = 4096
SPEC = CollectionSpec(
    name="docs__v1", embedding_model="test-model", dimension=DIM, bm25=Bm25Params(avg_doc_length=10)
)
BATCH = 250


def _points(start: int, count: int) -> list[IndexedPoint]:
    rng = np.random.default_rng(start)
    dense = rng.normal(size=(count, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    return [
        IndexedPoint(
            str(uuid.UUID(int=start + i + 1)),
            dense[i],
            SparseVector([start + i, 7], [1.0, 0.5]),
            {"doc_id": f"doc-{(start + i) // 10}", "text": f"chunk {start + i}"},
        )
        for i in range(count)
    ]


def _write(store: EdgeVectorStore, start: int, count: int) -> list[IndexedPoint]:
    written = []
    for offset in range(start, start + count, BATCH):
        batch = _points(offset, BATCH)
        store.upsert(SPEC.name, batch)
        written += batch
    return written


def _indexed_and_segments(store: EdgeVectorStore) -> tuple[int, int]:
    info = store._shard(SPEC.name).info()
    return int(info.indexed_vectors_count), int(info.segments_count)


@pytest.fixture
def store(tmp_path: Path) -> EdgeVectorStore:
    opened = EdgeVectorStore(tmp_path, segment_kb=10_000)
    opened.create_collection(SPEC)
    return opened


def test_each_full_appendable_segment_is_optimised_and_every_point_stays_findable(
    store: EdgeVectorStore,
) -> None:
    written = _write(store, 0, 500)
    # 500 points (8,000 KB): still appendable; only their BM25 vectors are indexed.
    assert _indexed_and_segments(store) == (500, 1)
    written += _write(store, 500, 250)
    # 750 points pass 10,000 KB: built into an optimised segment (dense and BM25 indexed).
    indexed, segments = _indexed_and_segments(store)
    assert indexed == 2 * 750 and segments >= 2
    written += _write(store, 750, 750)
    assert _indexed_and_segments(store)[0] == 2 * 1500

    assert store.count(SPEC.name) == 1500
    ids = [p.id for p in written]
    assert store.existing_ids(SPEC.name, ids) == set(ids)
    for point in written[::97]:
        found = store.search(
            SPEC.name, SearchRequest(mode="dense", limit=1, candidate_pool=1, dense=point.dense)
        )
        assert [hit.id for hit in found.hits] == [point.id]


def test_points_left_unoptimised_by_an_earlier_process_count_towards_the_next_segment(
    store: EdgeVectorStore, tmp_path: Path
) -> None:
    _write(store, 0, 500)
    store.close()
    reopened = EdgeVectorStore(tmp_path, segment_kb=10_000)
    _write(reopened, 500, 250)  # 250 written here, 750 unoptimised in all
    assert _indexed_and_segments(reopened)[0] == 2 * 750
    reopened.close()
