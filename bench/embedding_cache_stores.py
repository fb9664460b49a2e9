"""Which store holds the embedding cache: write and lookup rate, size on disk, memory.

Each store runs in its own process on the same synthetic keys (SHA-256 hex, as chunk text
hashes are) and vectors (384 float32, as all-MiniLM-L6-v2's): it writes N vectors in batches of
256, is reopened, and looks up a random sample of known and unknown keys in batches of 256.
Peak RSS is the process's, minus what it held before opening the store.

    python bench/embedding_cache_stores.py --vectors 200000

Prints one line per store, then one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIMENSION = 384
BATCH = 256


def _keys(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SqliteStore:
    def __init__(self, folder: Path) -> None:
        self.db = sqlite3.connect(folder / "cache.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS v (h TEXT PRIMARY KEY, vector BLOB) WITHOUT ROWID"
        )

    def put(self, keys: list[str], matrix: np.ndarray) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO v VALUES (?, ?)",
                zip(keys, (row.tobytes() for row in matrix), strict=True),
            )

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(f"SELECT h, vector FROM v WHERE h IN ({marks})", keys)
        return {h: np.frombuffer(blob, np.float32) for h, blob in rows}


class SqliteRowidStore(SqliteStore):
    """Binary keys in a unique index beside a rowid table: vectors stay out of the key b-tree."""

    def __init__(self, folder: Path) -> None:
        self.db = sqlite3.connect(folder / "cache.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS v (h BLOB UNIQUE, vector BLOB)")

    def put(self, keys: list[str], matrix: np.ndarray) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO v VALUES (?, ?)",
                zip((bytes.fromhex(k) for k in keys), (r.tobytes() for r in matrix), strict=True),
            )

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(
            f"SELECT h, vector FROM v WHERE h IN ({marks})", [bytes.fromhex(k) for k in keys]
        )
        return {h.hex(): np.frombuffer(blob, np.float32) for h, blob in rows}


class LmdbStore:
    def __init__(self, folder: Path) -> None:
        import lmdb

        self.env = lmdb.open(str(folder / "cache.lmdb"), map_size=1 << 36)

    def put(self, keys: list[str], matrix: np.ndarray) -> None:
        with self.env.begin(write=True) as txn:
            for key, row in zip(keys, matrix, strict=True):
                txn.put(bytes.fromhex(key), row.tobytes(), overwrite=False)

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        with self.env.begin() as txn:
            for key in keys:
                blob = txn.get(bytes.fromhex(key))
                if blob is not None:
                    found[key] = np.frombuffer(blob, np.float32)
        return found


class ParquetStore:
    """Parquet parts, loaded whole when opened: the store being replaced (Arrow to numpy
    directly, not through Python lists, which is kinder to it than the code it replaces)."""

    def __init__(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        self.folder = folder
        self.index: dict[str, int] = {}
        self.matrix = np.zeros((0, DIMENSION), np.float32)
        parts = sorted(folder.glob("*.parquet"))
        if parts:
            tables = [pq.read_table(p) for p in parts]
            hashes = [h for t in tables for h in t.column("h").to_pylist()]
            self.matrix = np.concatenate(
                [
                    t.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, DIMENSION)
                    for t in tables
                ]
            )
            self.index = {h: i for i, h in enumerate(hashes)}
        self.pending: list[tuple[list[str], np.ndarray]] = []

    def put(self, keys: list[str], matrix: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "h": pa.array(keys),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(matrix.reshape(-1)), DIMENSION
                ),
            }
        )
        pq.write_table(table, self.folder / f"{len(list(self.folder.glob('*')))}.parquet")

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        return {k: self.matrix[self.index[k]] for k in keys if k in self.index}


STORES: dict[str, type[SqliteStore | LmdbStore | ParquetStore]] = {
    "sqlite": SqliteStore,
    "sqlite-rowid": SqliteRowidStore,
    "lmdb": LmdbStore,
    "parquet": ParquetStore,
}


def _run_one(name: str, vectors: int, lookups: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix=f"cache-{name}-"))
    try:
        keys = _keys(vectors)
        generator = np.random.default_rng(0)
        store = STORES[name](folder)
        started = time.perf_counter()
        for start in range(0, vectors, BATCH):
            matrix = generator.standard_normal((min(BATCH, vectors - start), DIMENSION))
            store.put(keys[start : start + BATCH], matrix.astype(np.float32))
        write_s = time.perf_counter() - started
        del store
        before = _rss_mb()
        opened = time.perf_counter()
        store = STORES[name](folder)
        open_s = time.perf_counter() - opened
        sample = [keys[i] for i in generator.integers(0, vectors, lookups // 2)]
        sample += _keys(lookups // 2, salt="unknown")
        generator.shuffle(sample)  # type: ignore[arg-type]
        started = time.perf_counter()
        found = 0
        for start in range(0, len(sample), BATCH):
            found += len(store.get(sample[start : start + BATCH]))
        lookup_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return {
            "writes_per_s": round(vectors / write_s),
            "open_s": round(open_s, 3),
            "lookups_per_s": round(len(sample) / lookup_s),
            "hit_fraction": round(found / len(sample), 3),
            "bytes_per_vector": round(size / vectors),
            "rss_growth_mb": round(_rss_mb() - before, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--lookups", type=int, default=50_000)
    parser.add_argument("--store", choices=sorted(STORES))
    args = parser.parse_args()
    if args.store:  # one store, in a process of its own
        print(json.dumps(_run_one(args.store, args.vectors, args.lookups)))
        return
    results = {}
    for name in STORES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--store",
                name,
                "--vectors",
                str(args.vectors),
                "--lookups",
                str(args.lookups),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, results[name], flush=True)
    print(json.dumps({"vectors": args.vectors, "dimension": DIMENSION, "stores": results}))


if __name__ == "__main__":
    main()
