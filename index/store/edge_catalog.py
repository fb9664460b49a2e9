"""The embedded store's catalog: a Qdrant Edge shard has no collections or aliases of its own,
so `catalog.json` names each collection's `CollectionSpec` and the aliases."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from index.contracts import CollectionSpec


class EdgeCatalog:
    """`catalog.json` in `path`, replaced atomically. Changes are read-modify-write under
    `lock`, across processes too, one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path / "catalog.json"
        self.lock = FileLock(path / "catalog.lock", thread_local=False)
        self._seen: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def read(self) -> dict[str, Any]:
        """A fresh copy to change and write back (callers hold `lock`)."""
        return copy.deepcopy(self.current())

    def current(self) -> dict[str, Any]:
        """The catalog as on disk, parsed again only when the file changed (it is replaced
        atomically, so a new inode or mtime means new contents); a search only stats it."""
        try:
            stat = self.file.stat()
        except FileNotFoundError:
            return {"collections": {}, "aliases": {}}
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        seen = self._seen
        if seen is None or seen[0] != stamp:
            seen = (stamp, json.loads(self.file.read_text()))
            self._seen = seen
        return seen[1]

    # -- what a `VectorStore` answers from the catalog alone: any process of the data dir may
    # read it (replaced atomically), so none of these needs the shards' owner.
    def collection_names(self) -> list[str]:
        return sorted(self.current()["collections"])

    def spec(self, name: str) -> CollectionSpec | None:
        data = self.current()["collections"].get(name)
        return CollectionSpec.from_metadata(data) if data else None

    def alias_target(self, alias: str) -> str | None:
        target: str | None = self.current()["aliases"].get(alias)
        return target

    def aliases(self) -> dict[str, str]:
        aliases: dict[str, str] = self.current()["aliases"]
        return dict(sorted(aliases.items()))

    def write(self, catalog: dict[str, Any]) -> None:
        handle, temp = tempfile.mkstemp(dir=self.path, prefix=".catalog-")
        with os.fdopen(handle, "w") as out:
            json.dump(catalog, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.file)
