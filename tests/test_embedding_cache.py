from __future__ import annotations

from pathlib import Path

import numpy as np

from index.embedding_cache import EmbeddingCache


def test_vectors_survive_reopening_and_are_kept_per_model(tmp_path: Path) -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache = EmbeddingCache(tmp_path, "model-a")
    cache.put_many(["h1", "h2"], vectors)
    reopened = EmbeddingCache(tmp_path, "model-a")
    got = reopened.get_many(["h1", "h2", "h3"])
    assert set(got) == {"h1", "h2"}
    np.testing.assert_array_equal(got["h2"], vectors[1])
    assert EmbeddingCache(tmp_path, "model-b").get_many(["h1"]) == {}


def test_known_hashes_are_not_written_again(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m")
    cache.put_many(["h1"], np.ones((1, 3), dtype=np.float32))
    cache.put_many(["h1"], np.zeros((1, 3), dtype=np.float32))
    assert len(list(cache.folder.glob("part-*.parquet"))) == 1
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, "m").get_many(["h1"])["h1"], np.ones(3))


def test_many_parts_are_compacted_into_one(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m")
    for i in range(70):
        cache.put_many([f"h{i}"], np.full((1, 2), i, dtype=np.float32))
    compacted = EmbeddingCache(tmp_path, "m")
    assert len(compacted) == 70
    assert len(list(compacted.folder.glob("part-*.parquet"))) == 1
