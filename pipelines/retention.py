"""Which collection versions of an index are kept."""

from __future__ import annotations

from index.versions import collection_name, version_number, versions_of
from pipelines.versioned_index import VersionedIndex


def apply_retention(index: VersionedIndex, keep: int) -> list[str]:
    """Keeps the serving version and the `keep - 1` that served most recently (then the
    newest); drops the rest. Call under the run lock."""
    serving = index.store.resolve_alias(index.alias)
    records = index.manifest.versions()

    def last_served(name: str) -> tuple[float, int]:
        record = records.get(name)
        served = record.updated_at if record and record.state == "retired" else 0.0
        return served, version_number(name)

    others = sorted(
        (collection_name(index.alias, v) for v in versions_of(index.store, index.alias)),
        key=last_served,
        reverse=True,
    )
    dropped = [name for name in others if name != serving][max(0, keep - 1) :]
    for name in dropped:
        index.store.drop_collection(name)
        index.manifest.record_version(name, "dropped", note="retention")
    return dropped
