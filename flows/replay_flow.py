"""`sluice eval --replay`: logged queries searched again on another collection version."""

from __future__ import annotations

from pathlib import Path

from composition.components import Components
from config.settings import Settings
from index.contracts import VectorStore
from index.query_log import newest_first
from index.versions import collection_name
from pipelines.replay import (
    COLUMNS,
    NOTHING_LOGGED,
    ReplayReport,
    ReplaySample,
    logged_queries,
    replay,
)


def version_collection(index: str, version: str) -> str:
    """`2`, `v2` or `docs__v2` name the same collection version."""
    number = version.removeprefix(f"{index}__").removeprefix("v")
    return collection_name(index, int(number)) if number.isdigit() else version


def logged_for(settings: Settings, log: Path, limit: int = 1000) -> ReplaySample:
    """The replayable queries the configured index was asked."""
    if not log.exists():
        return NOTHING_LOGGED
    rows = newest_first(log, ("index", *COLUMNS))
    return logged_queries((r for r in rows if r["index"] in (None, settings.index_name)), limit)


def run_replay(
    settings: Settings,
    log: Path,
    against: str,
    baseline: str | None = None,
    limit: int = 1000,
    store: VectorStore | None = None,
) -> ReplayReport:
    """The latest `limit` distinct queries of the query log `log` (a folder or one file),
    searched on `against` and on `baseline` (default: the version the index serves)."""
    if not log.exists():
        raise FileNotFoundError(f"query log {log} does not exist")
    parts = Components(settings)
    opened = store or parts.store()
    try:
        candidate = version_collection(settings.index_name, against)
        reference = (
            version_collection(settings.index_name, baseline)
            if baseline
            else opened.resolve_alias(settings.index_name)
        )
        for name in (candidate, reference):
            if not name or opened.collection_spec(name) is None:
                known = ", ".join(opened.list_collections()) or "none"
                raise LookupError(f"no collection version {name} (versions: {known})")
        assert reference is not None
        sample = logged_for(settings, log, limit)
        return replay(parts.searcher(opened), sample, reference, candidate)
    finally:
        if store is None:
            opened.close()
