"""The on-disk embedding cache: vectors by text hash per model, safe across processes, and
nothing loaded when it is opened."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from index.write.embedding_cache import EmbeddingCache


def test_vectors_survive_reopening_and_are_kept_per_model(tmp_path: Path) -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache = EmbeddingCache(tmp_path, "model-a")
    cache.put_many(["h1", "h2"], vectors)
    reopened = EmbeddingCache(tmp_path, "model-a")
    got = reopened.get_many(["h1", "h2", "h3"])
    assert set(got) == {"h1", "h2"}
    np.testing.assert_array_equal(got["h2"], vectors[1])
    assert EmbeddingCache(tmp_path, "model-b").get_many(["h1"]) == {}


def test_a_known_hash_keeps_its_first_vector(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m")
    cache.put_many(["h1"], np.ones((1, 3), dtype=np.float32))
    cache.put_many(["h1", "h2"], np.zeros((2, 3), dtype=np.float32))
    assert len(cache) == 2
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, "m").get_many(["h1"])["h1"], np.ones(3))


def test_lookups_beyond_one_query_and_repeated_hashes(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m")
    hashes = [f"h{i}" for i in range(2500)]
    cache.put_many(hashes, np.arange(2500, dtype=np.float32).reshape(-1, 1).repeat(2, axis=1))
    got = cache.get_many([*hashes, "h7", "missing"])
    assert len(got) == 2500 and got["h2499"].tolist() == [2499.0, 2499.0]


def test_parquet_parts_of_older_versions_are_imported_then_removed(tmp_path: Path) -> None:
    folder = EmbeddingCache(tmp_path, "m").folder
    for part in range(2):
        table = pa.table(
            {
                "text_hash": pa.array([f"p{part}a", f"p{part}b"]),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.full(6, part, np.float32)), 3
                ),
            }
        )
        pq.write_table(table, folder / f"part-{part}.parquet")
    cache = EmbeddingCache(tmp_path, "m")
    assert len(cache) == 4 and not list(folder.glob("part-*.parquet"))
    assert cache.get_many(["p1b"])["p1b"].tolist() == [1.0, 1.0, 1.0]


def _write_range(root: Path, start: int, count: int) -> None:
    cache = EmbeddingCache(root, "m")
    for i in range(start, start + count, 50):
        hashes = [f"h{j}" for j in range(i, i + 50)]
        cache.put_many(hashes, np.full((50, 4), i, np.float32))


def test_processes_write_and_read_one_cache_at_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_range, args=(tmp_path, n * 2000, 2000)) for n in range(3)
    ]
    for writer in writers:
        writer.start()
    reader = EmbeddingCache(tmp_path, "m")
    while any(w.is_alive() for w in writers):
        seen = reader.get_many([f"h{j}" for j in range(0, 6000, 7)])
        assert all(v.shape == (4,) for v in seen.values())
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert len(reader) == 6000
