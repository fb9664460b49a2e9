"""How a Qdrant server's collections are laid out over its nodes: shards, replicas, and shard
keys of their own for large tenants (Qdrant custom sharding). The embedded engine is one
process on one machine and has none of this."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from index.contracts import TENANT_FIELD, MatchAny, PayloadFilter

SHARED_SHARD_KEY = "shared"
"""The shard key of every tenant without one of its own."""


@dataclass(frozen=True)
class ClusterLayout:
    shard_number: int | None = None
    """Shards per collection, or per shard key with custom sharding (None: Qdrant's default)."""
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    tenant_shards: tuple[str, ...] = field(default_factory=tuple)
    """Tenants with a shard key of their own; with any, collections use custom sharding."""

    @property
    def custom_sharding(self) -> bool:
        return bool(self.tenant_shards)

    def shard_keys(self) -> list[str]:
        """Every shard key a new collection gets: the shared one, then each tenant's."""
        return [SHARED_SHARD_KEY, *(tenant_shard_key(t) for t in self.tenant_shards)]

    def shard_key_of(self, tenant: str | None) -> str:
        return tenant_shard_key(tenant) if tenant in self.tenant_shards else SHARED_SHARD_KEY

    def keys_for_filter(self, payload_filter: PayloadFilter | None) -> list[int | str] | None:
        """The shard keys a search or count needs: those of the tenants its filter confines it
        to (the searcher puts the tenant condition first), or None for every shard."""
        if not self.custom_sharding or payload_filter is None:
            return None
        for condition in payload_filter.must:
            if isinstance(condition, MatchAny) and condition.key == TENANT_FIELD:
                keys: list[int | str] = sorted(
                    {self.shard_key_of(str(t)) for t in condition.values}
                )
                return keys
        return None

    def collection_params(self) -> dict[str, Any]:
        """`create_collection`'s keyword arguments for this layout (unset ones left out, so
        the server's defaults apply)."""
        from qdrant_client import models

        params: dict[str, Any] = {
            name: value
            for name, value in (
                ("shard_number", self.shard_number),
                ("replication_factor", self.replication_factor),
                ("write_consistency_factor", self.write_consistency_factor),
            )
            if value is not None
        }
        if self.custom_sharding:
            params["sharding_method"] = models.ShardingMethod.CUSTOM
        return params


def tenant_shard_key(tenant: str) -> str:
    """A tenant's own shard key; prefixed so that no tenant's name is the shared key's."""
    return f"tenant:{tenant}"


def by_shard_key(layout: ClusterLayout, payloads: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Positions of the points (by their payloads) that go to each shard key."""
    groups: dict[str, list[int]] = {}
    for position, payload in enumerate(payloads):
        groups.setdefault(layout.shard_key_of(payload.get(TENANT_FIELD)), []).append(position)
    return groups
