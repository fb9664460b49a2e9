"""The `VectorStore` contract (`tests/store_contract.py`) on every store: the embedded engine,
the shared store as the shards' owner, the shared store as a client of an owner in a real
second process, and the qdrant-client store (its local mode, the same API as a server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from index.contracts import VectorStore
from index.store.channel import CALLS, ITERATIONS, protocol_methods
from index.store.cluster import ClusterLayout
from index.store.embedded import EdgeVectorStore
from index.store.server import QdrantClientStore
from index.store.shared import SharedEdgeStore
from tests.qdrant_cluster import ShardKeyedClient
from tests.store_contract import (
    CONTRACTS,
    AliasesContract,
    CollectionsContract,
    PointsContract,
    ScanContract,
    SearchContract,
)

ROOT = Path(__file__).resolve().parents[1]
STORES = (EdgeVectorStore, SharedEdgeStore, QdrantClientStore)


class Contract(CollectionsContract, AliasesContract, PointsContract, ScanContract, SearchContract):
    """Every capability; a store's class below only says how to open it."""


class TestEmbeddedStore(Contract):
    @pytest.fixture(scope="class")
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
        opened = EdgeVectorStore(tmp_path_factory.mktemp("edge"))
        yield opened
        opened.close()


class TestSharedStoreAsOwner(Contract):
    @pytest.fixture(scope="class")
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
        opened = SharedEdgeStore(tmp_path_factory.mktemp("owner"))
        assert opened.role == "owner"
        yield opened
        opened.close()


OWNER = """
    import sys
    from pathlib import Path
    from index.store.shared import SharedEdgeStore

    store = SharedEdgeStore(Path(sys.argv[1]))
    print(store.role, flush=True)
    sys.stdin.read()  # until the test closes it
    store.close()
"""


class TestSharedStoreAsClient(Contract):
    """Every call crosses the channel to an owner in another process."""

    @pytest.fixture(scope="class")
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
        path = tmp_path_factory.mktemp("client")
        owner = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(OWNER),
                str(path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert owner.stdout is not None and owner.stdout.readline().strip() == "owner"
        opened = SharedEdgeStore(path)
        assert opened.role == "client"
        yield opened
        opened.close()
        assert owner.stdin is not None
        owner.stdin.close()
        owner.wait(timeout=60)


class TestQdrantClientStore(Contract):
    @pytest.fixture(scope="class")
    def store(self) -> Iterator[VectorStore]:
        opened = QdrantClientStore(QdrantClient(location=":memory:"))
        yield opened
        opened.close()


class TestQdrantClientStoreWithTenantShards(Contract):
    """Laid out for a cluster: shards, replicas, and the contract's tenant on a shard key of
    its own, on a client that refuses writes without a shard key (tests/qdrant_cluster.py)."""

    @pytest.fixture(scope="class")
    def store(self) -> Iterator[VectorStore]:
        layout = ClusterLayout(
            shard_number=2,
            replication_factor=2,
            write_consistency_factor=2,
            tenant_shards=("acme",),
        )
        opened = QdrantClientStore(ShardKeyedClient(), layout)
        yield opened
        opened.close()


def test_the_contract_covers_every_method_of_the_protocol() -> None:
    covered = set().union(*(contract.COVERS for contract in CONTRACTS))  # type: ignore[attr-defined]
    assert covered | {"close"} == set(protocol_methods())


@pytest.mark.parametrize("store", STORES, ids=lambda store: store.__name__)
def test_every_store_carries_every_method_of_the_protocol(store: type) -> None:
    assert {m for m in protocol_methods() if not callable(getattr(store, m, None))} == set()


def test_the_channel_carries_every_call_of_the_protocol() -> None:
    assert CALLS | set(ITERATIONS) | {"close"} == set(protocol_methods())
