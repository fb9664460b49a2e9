"""The embedded engine shared by processes: one owner serves the shards, the others are its clients,
and a client takes over when the owner goes, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from index.contracts import (
    Bm25Params,
    CollectionSpec,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    SearchRequest,
    SparseVector,
)
from index.store.shared import SharedEdgeStore

ROOT = Path(__file__).resolve().parents[1]
DIM = 8


def _spec(name: str) -> CollectionSpec:
    return CollectionSpec(name, "test-model", DIM, Bm25Params(avg_doc_length=5))


def _points(start: int, n: int, doc: str = "doc") -> list[IndexedPoint]:
    rng = np.random.default_rng(start)
    points = []
    for i in range(start, start + n):
        dense = rng.normal(size=DIM).astype(np.float32)
        dense /= np.linalg.norm(dense)
        payload = {"doc_id": f"{doc}-{i % 3}", "doc_version": "v1", "ordinal": i}
        points.append(
            IndexedPoint(str(uuid.UUID(int=i + 1)), dense, SparseVector([i], [1.0]), payload)
        )
    return points


def _run(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python child process with the project on its path."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


CLIENT_WRITES = """
    import sys, uuid
    from pathlib import Path
    import numpy as np
    from index.contracts import Bm25Params, SparseVector
    from index.store.shared import SharedEdgeStore
    from index.contracts import CollectionSpec, IndexedPoint

    store = SharedEdgeStore(Path(sys.argv[1]))
    print(store.role, flush=True)
    name = sys.argv[2]
    store.create_collection(CollectionSpec(name, "test-model", 8, Bm25Params(avg_doc_length=5)))
    vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
    points = [
        IndexedPoint(str(uuid.UUID(int=i + 1)), vector, SparseVector([i], [1.0]), {"doc_id": "x"})
        for i in range(int(sys.argv[3]))
    ]
    store.upsert(name, points)
    store.set_alias(name.split("__")[0], name)
    print(store.count(name), flush=True)
    store.close()
"""


def test_a_second_process_writes_through_the_owner(tmp_path: Path) -> None:
    owner = SharedEdgeStore(tmp_path)
    try:
        assert owner.role == "owner"
        child = _run(CLIENT_WRITES, str(tmp_path), "docs__v1", "25")
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.split() == ["client", "25"]
        # What the client wrote is in the owner's shards, visible at once.
        assert owner.resolve_alias("docs") == "docs__v1"
        assert owner.count("docs__v1") == 25
    finally:
        owner.close()


def test_two_processes_creating_collections_at_once_keep_every_entry(tmp_path: Path) -> None:
    writers = [
        _run(
            """
            import sys
            from pathlib import Path
            from index.contracts import Bm25Params
            from index.store.shared import SharedEdgeStore
            from index.contracts import CollectionSpec

            store = SharedEdgeStore(Path(sys.argv[1]))
            for i in range(8):
                spec = CollectionSpec(f"{sys.argv[2]}__v{i + 1}", "m", 8, Bm25Params())
                store.create_collection(spec)
            store.close()
            """,
            str(tmp_path),
            name,
        )
        for name in ("alpha", "beta")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    reopened = SharedEdgeStore(tmp_path)
    try:
        names = reopened.list_collections()
        assert names == sorted(f"{n}__v{i}" for n in ("alpha", "beta") for i in range(1, 9))
    finally:
        reopened.close()


def test_a_client_takes_over_when_the_owner_closes(tmp_path: Path) -> None:
    owner = SharedEdgeStore(tmp_path)
    owner.create_collection(_spec("docs__v1"))
    owner.upsert("docs__v1", _points(0, 12))
    client = SharedEdgeStore(tmp_path)
    try:
        assert client.role == "client"
        hits = client.search(
            "docs__v1",
            SearchRequest("dense", 5, 5, dense=_points(0, 1)[0].dense),
        ).hits
        assert len(hits) == 5 and hits[0].id == str(uuid.UUID(int=1))
        asked = [str(uuid.UUID(int=i)) for i in (1, 2, 99)]
        assert client.existing_ids("docs__v1", asked) == set(asked[:2])
        owner.close()
        client.upsert("docs__v1", _points(12, 3))  # the owner is gone: this call takes over
        assert client.role == "owner"
        assert client.count("docs__v1") == 15
        client.delete("docs__v1", PayloadFilter(must=[MatchAny("doc_id", ["doc-0"])]))
        assert client.count("docs__v1") == 10
    finally:
        client.close()
        owner.close()


def test_an_owner_killed_with_sigkill_is_taken_over_with_its_writes(tmp_path: Path) -> None:
    owner = _run(
        """
        import sys, time, uuid
        from pathlib import Path
        import numpy as np
        from index.contracts import Bm25Params, SparseVector
        from index.store.shared import SharedEdgeStore
        from index.contracts import CollectionSpec, IndexedPoint

        store = SharedEdgeStore(Path(sys.argv[1]))
        store.create_collection(CollectionSpec("docs__v1", "m", 8, Bm25Params(avg_doc_length=5)))
        vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
        store.upsert("docs__v1", [
            IndexedPoint(str(uuid.UUID(int=i + 1)), vector, SparseVector([i], [1.0]), {})
            for i in range(40)
        ])
        store.set_alias("docs", "docs__v1")
        print(store.role, flush=True)
        time.sleep(600)
        """,
        str(tmp_path),
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "owner"
        client = SharedEdgeStore(tmp_path)
        assert client.role == "client"
        assert client.count("docs__v1") == 40
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
        started = time.monotonic()
        assert client.count("docs__v1") == 40  # taken over: the dead owner's writes are there
        assert client.role == "owner" and time.monotonic() - started < 30
        assert client.resolve_alias("docs") == "docs__v1"
        client.close()
    finally:
        if owner.poll() is None:
            owner.kill()


def test_the_channel_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from index.store.channel import key_path, socket_path

    owner = SharedEdgeStore(tmp_path)
    try:
        assert socket_path(tmp_path).stat().st_mode & 0o077 == 0
        assert key_path(tmp_path).stat().st_mode & 0o077 == 0
    finally:
        owner.close()
    assert not socket_path(tmp_path).exists()


@pytest.mark.parametrize("depth", [3, 12])
def test_a_deep_data_dir_still_gets_a_working_channel(tmp_path: Path, depth: int) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * depth)
    owner = SharedEdgeStore(deep)
    client = SharedEdgeStore(deep)
    try:
        assert client.role == "client"
        client.create_collection(_spec("docs__v1"))
        assert owner.list_collections() == ["docs__v1"]
    finally:
        client.close()
        owner.close()


def test_a_shard_folder_the_catalog_does_not_name_is_set_aside_not_deleted(tmp_path: Path) -> None:
    from index.store.embedded import EdgeVectorStore

    stray = tmp_path / "collections" / "docs__v1"
    stray.mkdir(parents=True)
    (stray / "segment.bin").write_bytes(b"someone's data")
    store = EdgeVectorStore(tmp_path)
    try:
        store.create_collection(_spec("docs__v1"))
        kept = [p for p in (tmp_path / "collections").iterdir() if p.name.startswith(".orphan-")]
        assert len(kept) == 1 and (kept[0] / "segment.bin").read_bytes() == b"someone's data"
        assert store.list_collections() == ["docs__v1"]
    finally:
        store.close()


def test_a_client_without_the_key_is_refused_and_the_owner_keeps_serving(tmp_path: Path) -> None:
    from index.store.channel import KeyChanged, ShardClient

    owner = SharedEdgeStore(tmp_path)
    try:
        with pytest.raises(KeyChanged):
            ShardClient(tmp_path, key=b"a guessed key")
        client = SharedEdgeStore(tmp_path)
        try:
            assert client.role == "client"
            client.create_collection(_spec("docs__v1"))
            assert owner.list_collections() == ["docs__v1"]
        finally:
            client.close()
    finally:
        owner.close()


def test_a_client_scans_every_point_in_batches(tmp_path: Path) -> None:
    owner = SharedEdgeStore(tmp_path)
    owner.create_collection(_spec("docs__v1"))
    owner.upsert("docs__v1", _points(0, 2500))
    client = SharedEdgeStore(tmp_path)
    try:
        assert client.role == "client"
        scrolled = [point_id for point_id, _ in client.scroll("docs__v1", ["doc_id"])]
        assert sorted(scrolled) == sorted(p for p, _ in owner.scroll("docs__v1", ["doc_id"]))
        assert len(set(scrolled)) == 2500
        pages = list(client.read_points("docs__v1", page_size=1000))
        assert [len(page) for page in pages] == [1000, 1000, 500]
    finally:
        client.close()
        owner.close()
