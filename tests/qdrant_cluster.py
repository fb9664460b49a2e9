"""qdrant-client's local mode standing in for a Qdrant cluster with custom sharding, which
cannot run here: local mode has no shards and ignores shard keys, so this client keeps the
shard keys each collection was given, refuses what a server refuses (a write to a custom-sharded
collection without a shard key, any shard key never created) and records the shard keys each
call named. What it cannot show is written down in docs/scaling.md ("What is not tested")."""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient, models


class ShardKeyedClient(QdrantClient):
    def __init__(self) -> None:
        super().__init__(location=":memory:")
        self.created: dict[str, dict[str, Any]] = {}
        self.shard_keys: dict[str, dict[str, dict[str, int | None]]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        """(method, collection, the shard keys it named) for every write, count and query."""

    def _collection(self, name: str) -> str:
        aliases = {a.alias_name: a.collection_name for a in self.get_aliases().aliases}
        return aliases.get(name, name)

    def _check(self, method: str, name: str, selector: Any, write: bool = False) -> None:
        collection = self._collection(name)
        custom = self.created.get(collection, {}).get("sharding_method") == (
            models.ShardingMethod.CUSTOM
        )
        keys = [selector] if isinstance(selector, str) else list(selector or [])
        if custom and write and not keys:
            raise ValueError(f"{method} into {collection}: shard key not specified")
        unknown = set(keys) - set(self.shard_keys.get(collection, {}))
        if unknown:
            raise ValueError(f"{method} on {collection}: no shard key {sorted(unknown)}")
        self.calls.append((method, collection, selector))

    def create_collection(self, collection_name: str, **kwargs: Any) -> bool:  # type: ignore[override]
        names = ("shard_number", "replication_factor", "write_consistency_factor")
        self.created[collection_name] = {n: kwargs.get(n) for n in (*names, "sharding_method")}
        return super().create_collection(collection_name, **kwargs)

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:  # type: ignore[override]
        self.created.pop(collection_name, None)
        self.shard_keys.pop(collection_name, None)
        return super().delete_collection(collection_name, **kwargs)

    def create_shard_key(  # type: ignore[override]
        self,
        collection_name: str,
        shard_key: str,
        shards_number: int | None = None,
        replication_factor: int | None = None,
        **kwargs: Any,
    ) -> bool:
        if self.created[collection_name]["sharding_method"] != models.ShardingMethod.CUSTOM:
            raise ValueError(f"{collection_name} is not custom-sharded")
        keys = self.shard_keys.setdefault(collection_name, {})
        if shard_key in keys:
            raise ValueError(f"shard key {shard_key} exists")
        keys[shard_key] = {"shards_number": shards_number, "replication_factor": replication_factor}
        return True

    def upsert(  # type: ignore[override]
        self, collection_name: str, points: Any, shard_key_selector: Any = None, **kwargs: Any
    ) -> Any:
        self._check("upsert", collection_name, shard_key_selector, write=True)
        return super().upsert(collection_name, points, **kwargs)

    def delete(  # type: ignore[override]
        self,
        collection_name: str,
        points_selector: Any,
        shard_key_selector: Any = None,
        **kwargs: Any,
    ) -> Any:
        self._check("delete", collection_name, shard_key_selector)
        return super().delete(collection_name, points_selector, **kwargs)

    def count(  # type: ignore[override]
        self, collection_name: str, shard_key_selector: Any = None, **kwargs: Any
    ) -> Any:
        self._check("count", collection_name, shard_key_selector)
        return super().count(collection_name, **kwargs)

    def query_points(  # type: ignore[override]
        self, collection_name: str, shard_key_selector: Any = None, **kwargs: Any
    ) -> Any:
        self._check("query_points", collection_name, shard_key_selector)
        return super().query_points(collection_name, **kwargs)

    def query_batch_points(  # type: ignore[override]
        self, collection_name: str, requests: Any, **kwargs: Any
    ) -> Any:
        for request in requests:
            self._check("query_batch_points", collection_name, request.shard_key)
        return super().query_batch_points(collection_name, requests, **kwargs)
