"""Optimising an embedded shard off the serving path: in a child process, on a copy.

qdrant-edge-py holds the GIL for the whole of `optimize()` (~10 s per ~32,000 chunks here), so
a process that optimises answers nothing meanwhile: when that process is `sluice serve`, owning
the shards, every search waited (docs/benchmarks.md, "No stall while serving"). Instead:

1. writes to the collection are held (readers go on), the shard is flushed;
2. the shard's folder is copied beside it: files that only the appendable segment, the WAL and
   the shard's own settings change are copied, the optimised segments' files are hard links
   (the engine never writes them in place: it writes new files and renames);
3. a child process opens the copy, optimises it and closes it, while this process keeps
   searching the original;
4. the original is closed, the copy renamed into its place and opened (~0.2 s), writes resume.

A crash at any step leaves the original, or, between the two renames, the original set aside
under a name `recover` finds: the next opening repairs it. A child that fails leaves the
original untouched, and the optimisation is done in-process instead (correct, if not quiet).

    python -m index.store.optimizer SHARD_DIR SPEC_JSON SEGMENT_KB   # the child
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

COPY_SUFFIX = ".optimising-"
OLD_SUFFIX = ".replaced-"
CHILD_TIMEOUT_S = 3600


def copy_for_optimising(shard_dir: Path) -> Path:
    """The copy described above, beside `shard_dir`; the shard must be flushed and unwritten."""
    copy = shard_dir.with_name(f"{shard_dir.name}{COPY_SUFFIX}{uuid.uuid4().hex[:8]}")
    subprocess.run(["cp", "-al", str(shard_dir), str(copy)], check=True)
    mutable = [copy / "wal"] + [
        segment for segment in (copy / "segments").iterdir() if _appendable(segment)
    ]
    for folder in mutable:
        original = shard_dir / folder.relative_to(copy)
        shutil.rmtree(folder)
        shutil.copytree(original, folder)
    for file in copy.iterdir():
        if file.is_file():  # the shard's settings: rewritten on load
            file.unlink()
            shutil.copy2(shard_dir / file.name, file)
    return copy


def _appendable(segment: Path) -> bool:
    """A segment written in place (no HNSW index on its dense vectors)."""
    config = json.loads((segment / "segment.json").read_text())["config"]
    return any(
        vector.get("index", {}).get("type") == "plain"
        for vector in config.get("vector_data", {}).values()
    )


def optimise_in_child(copy: Path, spec_metadata: dict[str, Any], segment_kb: int) -> str:
    """Runs the child on `copy`; an empty string when it optimised, else why not."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "index.store.optimizer",
            str(copy),
            json.dumps(spec_metadata),
            str(segment_kb),
        ],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode == 0:
        return ""
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def swap_in(shard_dir: Path, copy: Path) -> Path:
    """The optimised copy in the original's place; returns where the original went (to be
    removed once nothing reads it)."""
    old = shard_dir.with_name(f"{shard_dir.name}{OLD_SUFFIX}{uuid.uuid4().hex[:8]}")
    shard_dir.rename(old)
    copy.rename(shard_dir)
    return old


def recover(collections: Path, which: Callable[[str], bool] = lambda collection: True) -> None:
    """After a crash: copies never swapped in are removed; an original set aside whose copy
    never took its place is put back. Only for the collections `which` names: another live
    process may be optimising the others."""
    if not collections.is_dir():
        return
    for entry in collections.iterdir():
        if COPY_SUFFIX in entry.name and which(entry.name.split(COPY_SUFFIX)[0]):
            shutil.rmtree(entry, ignore_errors=True)
    for entry in collections.iterdir():
        if OLD_SUFFIX in entry.name and which(entry.name.split(OLD_SUFFIX)[0]):
            original = entry.with_name(entry.name.split(OLD_SUFFIX)[0])
            if original.exists():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.rename(original)


def main(shard_dir: str, spec_json: str, segment_kb: str) -> None:
    import qdrant_edge

    from index.contracts import CollectionSpec
    from index.store.shard_config import shard_config

    spec = CollectionSpec.from_metadata(json.loads(spec_json))
    shard = qdrant_edge.EdgeShard.load(shard_dir, shard_config(qdrant_edge, spec, int(segment_kb)))
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()


if __name__ == "__main__":
    os.nice(5)  # the serving process's searches come first
    main(*sys.argv[1:4])
