"""Pointing an index back at a version that served before, caught up with what came since."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from index.versions import collection_name, version_number, versions_of
from index.write.version_sync import sync_version
from pipelines.versioned_index import VersionedIndex


@dataclass
class RollbackReport:
    index: str
    previous: str
    serving: str
    embedding_model: str
    points: int
    caught_up: dict[str, int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(index: VersionedIndex, to: int | None, wait_for_lock_s: float) -> RollbackReport:
    """Points the index back at version `to` (default: the newest older one kept), first
    catching it up with what was ingested since it last served, with its own model."""
    started = time.perf_counter()
    store, alias = index.store, index.alias
    with index.run_lock(wait_for_lock_s):
        current = index.serving_spec()
        records = index.manifest.versions()

        def served(version: int) -> bool:
            """A version that served before; one this manifest does not know is trusted only
            if older than the serving one."""
            record = records.get(collection_name(alias, version))
            if record is None:
                return version < version_number(current.name)
            return record.state in ("retired", "serving")

        candidates = [
            v for v in versions_of(store, alias) if v != version_number(current.name) and served(v)
        ]
        older = [v for v in candidates if v < version_number(current.name)]
        number = to if to is not None else (older[-1] if older else None)
        target = (
            store.collection_spec(collection_name(alias, number)) if number in candidates else None
        )
        if target is None:
            kept = ", ".join(str(v) for v in candidates) or "none"
            raise ValueError(
                f"no version to roll back to from {current.name}: asked for "
                f"{to or 'the previous'}; versions of '{alias}' that served before and are "
                f"kept: {kept}"
            )
        embedder = index.embedder_for(target)
        catch_up = sync_version(
            store, current.name, target.name, embedder, index.cache_for(embedder)
        )
        store.set_alias(alias, target.name)
    index.manifest.record_version(current.name, "retired", note=f"rolled back to {target.name}")
    index.manifest.record_version(target.name, "serving", note=f"rollback from {current.name}")
    return RollbackReport(
        index=alias,
        previous=current.name,
        serving=target.name,
        embedding_model=target.embedding_model,
        points=store.count(target.name),
        caught_up={
            "points": catch_up.points_written,
            "stale_versions": catch_up.stale_versions_removed,
            "embedded": catch_up.embedded,
        },
        seconds=round(time.perf_counter() - started, 2),
    )
