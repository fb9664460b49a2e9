"""A local folder as a document source, walked recursively with include/exclude globs."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from config.sources import LocalFolderConfig
from ingest.types import SourceFile, SourceItem, SourceUnavailable


def glob_matches(relative_path: str, pattern: str) -> bool:
    """Match a POSIX relative path against a glob where `**/` also matches zero folders."""
    if fnmatchcase(relative_path, pattern):
        return True
    return pattern.startswith("**/") and glob_matches(relative_path, pattern[3:])


def selected(relative_path: str, include: list[str], exclude: list[str]) -> bool:
    return any(glob_matches(relative_path, p) for p in include) and not any(
        glob_matches(relative_path, p) for p in exclude
    )


class LocalFolderSource:
    """Lists the files under `root` whose relative paths match an include and no exclude glob.

    The cheap fingerprint is mtime and size; a file is read only when that changes.

    >>> source = LocalFolderSource(Path("docs"), include=["**/*.md"])
    >>> [item.uri for item in source.list_items()]  # doctest: +SKIP
    ['file:///…/docs/architecture.md']
    """

    def __init__(
        self,
        root: Path,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.include = include or ["**/*"]
        self.exclude = exclude or []

    @classmethod
    def from_config(cls, config: LocalFolderConfig) -> LocalFolderSource:
        return cls(config.path, config.include, config.exclude)

    def list_items(self) -> list[SourceItem]:
        """A missing root fails the run (recorded in its history), never reads as "all deleted"."""
        if not self.root.exists():
            raise SourceUnavailable(f"source folder {self.root} does not exist (is it mounted?)")
        if self.root.is_file():
            candidates, base = [self.root], self.root.parent
        else:
            candidates, base = sorted(p for p in self.root.rglob("*") if p.is_file()), self.root
        items = []
        for path in candidates:
            relative = path.relative_to(base).as_posix()
            if not selected(relative, self.include, self.exclude):
                continue
            stat = path.stat()
            items.append(
                SourceItem(
                    uri=path.as_uri(),
                    name=relative,
                    size=stat.st_size,
                    fingerprint=f"{stat.st_mtime_ns}:{stat.st_size}",
                )
            )
        return items

    def fetch(self, item: SourceItem, folder: Path) -> SourceFile:
        path = self.root if self.root.is_file() else self.root / item.name
        stat = path.stat()
        return SourceFile(uri=item.uri, path=path, size=stat.st_size, mtime=stat.st_mtime)
