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

from index.contracts import CollectionSpec, VectorStore
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


@pytest.fixture(scope="module")
def remote_owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir whose shards another process owns, for the client classes below."""
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
    yield path
    assert owner.stdin is not None
    owner.stdin.close()
    owner.wait(timeout=60)


class _CreatedBy(SharedEdgeStore):
    """A client whose collections another store creates (and so holds or owns): every other
    call on them crosses a channel."""

    def __init__(self, path: Path, creator: VectorStore) -> None:
        super().__init__(path)
        self.creator = creator

    def create_collection(self, spec: CollectionSpec) -> None:
        self.creator.create_collection(spec)


class TestSharedStoreAsClient(Contract):
    """A client in this process, the owner in another: the collections the client creates it
    holds itself (`index/store/leases.py`); the catalog's calls cross the channel."""

    @pytest.fixture(scope="class")
    def store(self, remote_owner: Path) -> Iterator[VectorStore]:
        opened = SharedEdgeStore(remote_owner)
        assert opened.role == "client"
        yield opened
        opened.close()


class TestSharedStoreAsClientOfTheOwner(Contract):
    """Every call crosses the channel to the owner in another process, which made them."""

    @pytest.fixture(scope="class")
    def store(self, remote_owner: Path) -> Iterator[VectorStore]:
        class _ByTheOwner(SharedEdgeStore):
            def create_collection(self, spec: CollectionSpec) -> None:
                self._call("create_collection", spec)

        opened = _ByTheOwner(remote_owner)
        assert opened.role == "client"
        yield opened
        opened.close()


class TestSharedStoreAsClientOfAHolder(Contract):
    """Every call on a collection crosses the channel of the client that created it (its
    holder), the catalog's to the owner in another process."""

    @pytest.fixture(scope="class")
    def store(self, remote_owner: Path) -> Iterator[VectorStore]:
        holder = SharedEdgeStore(remote_owner)
        opened = _CreatedBy(remote_owner, holder)
        assert opened.role == holder.role == "client"
        yield opened
        opened.close()
        holder.close()


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
