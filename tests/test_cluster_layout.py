"""A Qdrant cluster's layout from the settings: shards, replicas and write consistency on each
new collection, large tenants on shard keys of their own, each point written to its tenant's
key and each tenant's search sent to its keys alone. On qdrant-client's local mode through a
client that keeps shard keys as a server does (tests/qdrant_cluster.py)."""

from __future__ import annotations

import uuid

import numpy as np
from qdrant_client import models

from config.settings import Settings
from index.contracts import (
    Bm25Params,
    CollectionSpec,
    IndexedPoint,
    MatchAny,
    PayloadFilter,
    SearchRequest,
    SparseVector,
)
from index.search.searcher import confined
from index.store.cluster import SHARED_SHARD_KEY, ClusterLayout
from index.store.server import QdrantClientStore
from tests.qdrant_cluster import ShardKeyedClient

LAYOUT = ClusterLayout(
    shard_number=3, replication_factor=2, write_consistency_factor=2, tenant_shards=("acme",)
)
TENANTS = ("acme", "beta", "gamma", "acme", "beta", "acme")


def _points() -> list[IndexedPoint]:
    rng = np.random.default_rng(7)
    made = []
    for i, tenant in enumerate(TENANTS):
        dense = rng.normal(size=8).astype(np.float32)
        payload = {"doc_id": f"d{i}", "ordinal": i, "text": f"t{i}", "tenant": tenant}
        made.append(
            IndexedPoint(
                str(uuid.UUID(int=i + 1)),
                dense / np.linalg.norm(dense),
                SparseVector([i], [1.0]),
                payload,
            )
        )
    return made


def _store(layout: ClusterLayout) -> tuple[QdrantClientStore, ShardKeyedClient, CollectionSpec]:
    client = ShardKeyedClient()
    store = QdrantClientStore(client, layout)
    spec = CollectionSpec("docs__v1", "m", 8, Bm25Params(avg_doc_length=1), tenants=True)
    store.create_collection(spec)
    store.set_alias("docs", spec.name)
    store.upsert("docs", _points())
    return store, client, spec


def _search(store: QdrantClientStore, spec: CollectionSpec, tenants: list[str] | None) -> set[str]:
    request = SearchRequest(
        mode="dense",
        dense=_points()[0].dense,
        limit=10,
        candidate_pool=10,
        filter=confined(None, tenants, spec) or PayloadFilter(),
    )
    return {hit.payload["tenant"] for hit in store.search("docs", request).hits}


def test_a_new_collection_gets_the_layout_and_a_shard_key_per_large_tenant() -> None:
    _, client, spec = _store(LAYOUT)
    assert client.created[spec.name] == {
        "shard_number": 3,
        "replication_factor": 2,
        "write_consistency_factor": 2,
        "sharding_method": models.ShardingMethod.CUSTOM,
    }
    each = {"shards_number": 3, "replication_factor": 2}
    assert client.shard_keys[spec.name] == {SHARED_SHARD_KEY: each, "tenant:acme": each}


def test_each_point_goes_to_its_tenants_key_and_a_search_to_its_tenants_keys_only() -> None:
    store, client, spec = _store(LAYOUT)
    writes = [(selector, method) for method, _, selector in client.calls if method == "upsert"]
    assert sorted(writes) == [("shared", "upsert"), ("tenant:acme", "upsert")]
    acme = PayloadFilter(must=(MatchAny("tenant", ("acme",)),))
    assert store.count("docs", acme) == 3 and store.count("docs") == 6

    client.calls.clear()
    assert _search(store, spec, ["acme"]) == {"acme"}
    assert _search(store, spec, ["beta"]) == {"beta"}
    assert _search(store, spec, ["acme", "gamma"]) == {"acme", "gamma"}
    assert _search(store, spec, None) == {"acme", "beta", "gamma"}
    asked = [selector for method, _, selector in client.calls if method == "query_points"]
    assert asked == [["tenant:acme"], ["shared"], ["shared", "tenant:acme"], None]


def test_without_large_tenants_collections_shard_automatically_and_answer_alike() -> None:
    auto, client, spec = _store(ClusterLayout(shard_number=2))
    assert client.created[spec.name]["sharding_method"] is None
    assert client.shard_keys == {} and all(selector is None for *_, selector in client.calls)
    custom, _, _ = _store(LAYOUT)
    for tenants in (["acme"], ["beta", "gamma"], None):
        assert _search(auto, spec, tenants) == _search(custom, spec, tenants)


def test_the_settings_lay_out_the_server_store() -> None:
    from composition.components import Components

    settings = Settings(
        qdrant_url="http://127.0.0.1:9",  # never contacted: building a client does not connect
        qdrant_shard_number=6,
        qdrant_replication_factor=2,
        qdrant_write_consistency_factor=1,
        qdrant_tenant_shards=["acme", "globex"],
    )
    store = Components(settings).store()
    assert isinstance(store, QdrantClientStore)
    assert store.layout == ClusterLayout(6, 2, 1, ("acme", "globex"))
    assert store.layout.shard_keys() == ["shared", "tenant:acme", "tenant:globex"]


def test_a_collection_keeps_the_sharding_it_was_made_with_and_a_new_one_takes_the_settings() -> (
    None
):
    """Tenant shards set on a running deployment apply from the next collection (a re-embed);
    the serving one, made without, goes on taking writes and answering searches."""
    _, client, spec = _store(ClusterLayout())
    store = QdrantClientStore(client, LAYOUT)
    store.upsert(spec.name, _points()[:2])  # a server would refuse a shard key here
    assert _search(store, spec, ["acme"]) == {"acme"}
    newer = CollectionSpec("docs__v2", "m", 8, Bm25Params(avg_doc_length=1), tenants=True)
    store.create_collection(newer)
    store.upsert(newer.name, _points())
    store.set_alias("docs", newer.name)
    assert client.shard_keys[newer.name].keys() == {"shared", "tenant:acme"}
    assert _search(store, newer, ["beta"]) == {"beta"}
    assert [s for m, c, s in client.calls if c == spec.name and m == "upsert"] == [None, None]
    store.drop_collection(spec.name)
    assert store.list_collections() == ["docs__v2"]
