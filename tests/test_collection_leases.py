"""A collection made by a process that does not own the data dir stays in that process
(`index/store/leases.py`): the owner, `sluice serve` in practice, never opens its shard while
the builder lives, so the builder's writes and segment swaps never pause the owner's searches.
Real processes: the builder in a child, stopped, resumed and killed under the owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.contracts import SearchRequest
from index.store.channel import OwnerUnresponsive
from index.store.shared import SharedEdgeStore
from tests.conftest import stop_process
from tests.store_contract import new_spec, points, vector

ROOT = Path(__file__).resolve().parents[1]

BUILDER = """
    import pickle, sys
    sys.path.insert(0, sys.argv[2])
    from index.store.shared import SharedEdgeStore
    from tests.store_contract import points

    spec = pickle.loads(bytes.fromhex(sys.argv[3]))
    store = SharedEdgeStore(__import__("pathlib").Path(sys.argv[1]))
    store.create_collection(spec)
    store.upsert(spec.name, points(300))
    print(store.role, flush=True)
    for line in sys.stdin:  # until the test closes it
        store.release_collections()
        print("released", flush=True)
    store.close()
"""


def _open_in(pid: int, folder: Path) -> list[str]:
    """Files under `folder` that process `pid` has open."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder.resolve())):
            found.append(target)
    return found


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[SharedEdgeStore]:
    store = SharedEdgeStore(tmp_path / "qdrant", owner_wait_s=10, deadline_s=2)
    assert store.role == "owner"
    yield store
    store.close()


def _builder(owner: SharedEdgeStore, name_spec: object) -> subprocess.Popen[str]:
    import pickle

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(BUILDER),
            str(owner.path),
            str(ROOT),
            pickle.dumps(name_spec).hex(),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "client"
    return child


def _search(owner: SharedEdgeStore, name: str) -> list[str]:
    request = SearchRequest(mode="dense", limit=5, candidate_pool=5, dense=vector(7))
    return [hit.id for hit in owner.search(name, request).hits]


def test_the_owner_answers_for_a_collection_another_process_builds_without_opening_it(
    owner: SharedEdgeStore,
) -> None:
    spec = new_spec("leased")
    builder = _builder(owner, spec)
    shard = owner.path / "collections" / spec.name
    try:
        assert owner.count(spec.name) == 300
        assert _search(owner, spec.name)[0] == points(8)[7].id
        assert owner.list_collections() == [spec.name]
        assert _open_in(os.getpid(), shard) == []  # the builder's writes never came here
        assert _open_in(builder.pid, shard)
    finally:
        assert builder.stdin is not None
        builder.stdin.close()
        builder.wait(timeout=60)
    # The builder closed: the owner opens the collection on the next call.
    assert owner.count(spec.name) == 300
    assert _open_in(os.getpid(), shard)


def test_a_stopped_builder_gets_a_deadline_and_a_killed_one_is_taken_over(
    owner: SharedEdgeStore,
) -> None:
    spec = new_spec("leased")
    builder = _builder(owner, spec)
    try:
        assert owner.count(spec.name) == 300
        stop_process(builder.pid)
        started = time.monotonic()
        with pytest.raises(OwnerUnresponsive):
            owner.count(spec.name)
        assert time.monotonic() - started < 6  # the 2 s deadline, not a hang
        builder.send_signal(signal.SIGCONT)
        assert owner.count(spec.name) == 300
        builder.kill()
        builder.wait(timeout=30)
        # The kernel freed the lease with the process: the owner takes the shard over.
        assert owner.count(spec.name) == 300
        assert _search(owner, spec.name)[0] == points(8)[7].id
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait(timeout=30)


def test_a_builder_that_hands_its_collection_over_is_no_longer_needed(
    owner: SharedEdgeStore,
) -> None:
    """What a long-lived builder (a watcher) does after each sync: afterwards the owner answers
    the collection itself, even while the builder is stopped."""
    spec = new_spec("leased")
    builder = _builder(owner, spec)
    shard = owner.path / "collections" / spec.name
    try:
        assert owner.count(spec.name) == 300 and not _open_in(os.getpid(), shard)
        assert builder.stdin is not None and builder.stdout is not None
        builder.stdin.write("release\n")
        builder.stdin.flush()
        assert builder.stdout.readline().strip() == "released"
        stop_process(builder.pid)
        assert owner.count(spec.name) == 300
        assert _search(owner, spec.name)[0] == points(8)[7].id
        assert _open_in(os.getpid(), shard) and not _open_in(builder.pid, shard)
    finally:
        builder.kill()
        builder.wait(timeout=30)


OWNER = """
    import sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from index.store.shared import SharedEdgeStore

    store = SharedEdgeStore(Path(sys.argv[1]))
    print(store.role, flush=True)
    sys.stdin.read()
"""


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_holder_keeps_its_collection_when_the_owner_is_stopped_or_killed(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "qdrant"
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), str(path), str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "owner"
        holder = SharedEdgeStore(path, owner_wait_s=10, deadline_s=2)
        assert holder.role == "client"
        spec = new_spec("held")
        holder.create_collection(spec)
        holder.upsert(spec.name, points(50))
        if how == "stopped":
            stop_process(owner.pid)
        else:
            owner.kill()
            owner.wait(timeout=30)
        # Its own collection needs nobody else: writes and reads go on either way.
        holder.upsert(spec.name, points(10, start=50))
        assert holder.count(spec.name) == 60
        assert _search(holder, spec.name)[0] == points(8)[7].id
        if how == "killed":  # the data dir's calls re-elect: the holder now owns it
            holder.set_alias("held", spec.name)
            assert holder.role == "owner" and holder.resolve_alias("held") == spec.name
        holder.close()
    finally:
        if owner.poll() is None:
            os.kill(owner.pid, signal.SIGCONT)
            owner.kill()
            owner.wait(timeout=30)


def test_a_call_reaching_a_released_holder_sends_its_caller_elsewhere(tmp_path: Path) -> None:
    # A call on its way while the holder closes (CI's load once delivered one after the lease
    # was freed: /retrieve answered 503 "holds only docs__v1, not docs__v1"): the holder says
    # it is gone, which a client answers by asking the data dir's owner, not by failing.
    from index.contracts import StoreError
    from index.store.channel import OwnerGone
    from index.store.leases import Lease

    spec = new_spec("held")
    lease = Lease(tmp_path, spec.name, wait_s=1.0, deadline_s=5.0)
    lease.store.create_collection(spec)
    lease.store.upsert(spec.name, points(10))
    assert lease.store.count(spec.name) == 10
    with pytest.raises(StoreError, match="holds only"):
        lease.store.count("another")
    lease.close()
    with pytest.raises(OwnerGone):
        lease.store.count(spec.name)
