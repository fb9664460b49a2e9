"""Embeddings keyed by (model id, text hash) in Parquet, so no text is embedded twice."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

_MAX_PARTS = 64


def _model_folder(model_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)[-60:]
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"


class EmbeddingCache:
    """One folder per model of append-only Parquet parts (`text_hash`, `vector`).

    Parts are written to a temporary name and renamed, so a crash never leaves a torn file; the
    cache is loaded into memory when opened and compacted into one part when parts pile up.

    >>> cache = EmbeddingCache(Path(".sluice/embedding-cache"), "all-MiniLM-L6-v2")
    >>> cache.get_many(["3f2a…"])  # doctest: +SKIP
    {}
    """

    def __init__(self, root: Path, model_id: str) -> None:
        self.folder = root / _model_folder(model_id)
        self.folder.mkdir(parents=True, exist_ok=True)

    @cached_property
    def _vectors(self) -> dict[str, npt.NDArray[np.float32]]:
        """Read on first use: a run that embeds nothing never opens the cache."""
        vectors: dict[str, npt.NDArray[np.float32]] = {}
        parts = sorted(self.folder.glob("part-*.parquet"))
        for part in parts:
            table = pq.read_table(part)
            hashes = table.column("text_hash").to_pylist()
            matrix = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
            vectors.update(zip(hashes, matrix, strict=True))
        if len(parts) > _MAX_PARTS:
            self._compact(parts, vectors)
        return vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def get_many(self, text_hashes: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        return {h: self._vectors[h] for h in text_hashes if h in self._vectors}

    def put_many(self, text_hashes: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        fresh = [
            (h, v) for h, v in zip(text_hashes, vectors, strict=True) if h not in self._vectors
        ]
        if not fresh:
            return
        self._write_part([h for h, _ in fresh], np.stack([v for _, v in fresh]))
        self._vectors.update(fresh)

    def _write_part(self, hashes: list[str], matrix: npt.NDArray[np.float32]) -> None:
        dimension = matrix.shape[1]
        table = pa.table(
            {
                "text_hash": pa.array(hashes, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(matrix.reshape(-1), pa.float32()), dimension
                ),
            }
        )
        name = f"part-{uuid.uuid4().hex}.parquet"
        temporary = self.folder / f".{name}.tmp"
        pq.write_table(table, temporary)
        os.replace(temporary, self.folder / name)

    def _compact(self, parts: list[Path], vectors: dict[str, npt.NDArray[np.float32]]) -> None:
        hashes = list(vectors)
        self._write_part(hashes, np.stack([vectors[h] for h in hashes]))
        for part in parts:
            part.unlink()
