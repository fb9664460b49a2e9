"""Bounded in-memory caches of the serving path, with their hit counts.

A result is keyed by the collection version that answered it and that collection's write stamp
(`VectorStore.write_stamp`), so a write in any process, an alias move or a rollback makes every
earlier answer unreachable: nothing needs to be told to invalidate. A query vector is keyed by
the embedding model and the query only, since that is all it depends on.
"""

from __future__ import annotations

import threading
import unicodedata
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K")
V = TypeVar("V")


def normalised_query(text: str) -> str:
    """What a query is searched and cached as: NFC, whitespace runs as one space, trimmed.
    Case is kept: a cased model may embed "US" and "us" differently."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class BoundedCache(Generic[K, V]):
    """A thread-safe LRU cache of at most `entries` values (0: caches nothing)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._values: LRUCache[K, V] | None = LRUCache(maxsize=entries) if entries else None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._values is not None

    def get(self, key: K) -> V | None:
        if self._values is None:
            return None
        with self._lock:
            value = self._values.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        if self._values is not None:
            with self._lock:
                self._values[key] = value

    def clear(self) -> None:
        if self._values is not None:
            with self._lock:
                self._values.clear()

    def __len__(self) -> int:
        return len(self._values) if self._values is not None else 0
