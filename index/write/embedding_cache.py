"""Embeddings keyed by (model id, text hash) on disk, so no text is embedded twice.

One SQLite database per model (a rowid table of `text_hash`, `vector` with a unique index on the
hash), chosen by measuring (`bench/embedding_cache_stores.py`, docs/benchmarks.md): it looks up
~80,000 vectors/s in batches, takes ~2.1 kB per 384-dimension vector on disk, and opening it
reads nothing, so a run's memory does not grow with the cache (the Parquet parts it replaces
were loaded whole: over 6 kB of memory per cached vector). SQLite's WAL lets any number of
processes read while one writes, and there is nothing to compact. Parquet parts of older
versions are imported on first open, then removed.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

_DATABASE = "vectors.sqlite"
_LOOKUP_BATCH = 900
"""Hashes per `IN (...)` query, below SQLite's bound on query parameters."""
_BUSY_TIMEOUT_S = 120
"""How long a writer waits for another process's write to finish (a batch takes milliseconds)."""


def _model_folder(model_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)[-60:]
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"


class EmbeddingCache:
    """One folder per model holding one SQLite database.

    A write is one transaction, so a crash leaves every batch either whole or absent.

    >>> cache = EmbeddingCache(Path(".sluice/embedding-cache"), "all-MiniLM-L6-v2")
    >>> cache.get_many(["3f2a…"])  # doctest: +SKIP
    {}
    """

    def __init__(self, root: Path, model_id: str) -> None:
        self.folder = root / _model_folder(model_id)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.folder / _DATABASE,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (text_hash TEXT NOT NULL UNIQUE, vector BLOB)"
        )
        self._import_parquet_parts()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM vectors").fetchone()
        return int(count)

    def get_many(self, text_hashes: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        found: dict[str, npt.NDArray[np.float32]] = {}
        unique = list(dict.fromkeys(text_hashes))
        with self._lock:
            for start in range(0, len(unique), _LOOKUP_BATCH):
                batch = unique[start : start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT text_hash, vector FROM vectors WHERE text_hash IN ({marks})", batch
                )
                found.update((h, np.frombuffer(blob, np.float32)) for h, blob in rows)
        return found

    def put_many(self, text_hashes: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        rows = [
            (h, np.ascontiguousarray(v, np.float32).tobytes())
            for h, v in zip(text_hashes, vectors, strict=True)
        ]
        if rows:
            with self._lock:
                self._write(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, rows: list[tuple[str, bytes]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _import_parquet_parts(self) -> None:
        """The Parquet parts an older version wrote: imported one at a time, then deleted (a
        crash in between imports a part again, which inserts nothing twice)."""
        parts = sorted(self.folder.glob("part-*.parquet"))
        if not parts:
            return
        import pyarrow.parquet as pq

        for part in parts:
            table = pq.read_table(part)
            vectors = table.column("vector").combine_chunks()
            dimension = vectors.type.list_size
            matrix = vectors.flatten().to_numpy().reshape(-1, dimension)
            hashes = table.column("text_hash").to_pylist()
            with self._lock:
                self._write([(h, row.tobytes()) for h, row in zip(hashes, matrix, strict=True)])
            part.unlink()
