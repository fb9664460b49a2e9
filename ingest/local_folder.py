"""A local folder as a document source, walked recursively with include/exclude globs."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from ingest.types import SourceFile


def glob_matches(relative_path: str, pattern: str) -> bool:
    """Match a POSIX relative path against a glob where `**/` also matches zero folders."""
    if fnmatchcase(relative_path, pattern):
        return True
    return pattern.startswith("**/") and glob_matches(relative_path, pattern[3:])


class LocalFolderSource:
    """Lists the files under `root` whose relative paths match an include and no exclude glob.

    >>> source = LocalFolderSource(Path("docs"), include=["**/*.md"])
    >>> [f.uri for f in source.list_files()]  # doctest: +SKIP
    ['file:///…/docs/architecture.md']
    """

    def __init__(
        self,
        root: Path,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> None:
        if not root.exists():
            raise FileNotFoundError(f"source folder {root} does not exist")
        self.root = root.resolve()
        self.include = include or ["**/*"]
        self.exclude = exclude or []

    def list_files(self) -> list[SourceFile]:
        if self.root.is_file():
            candidates = [self.root]
            base = self.root.parent
        else:
            candidates = sorted(p for p in self.root.rglob("*") if p.is_file())
            base = self.root
        files = []
        for path in candidates:
            relative = path.relative_to(base).as_posix()
            if not any(glob_matches(relative, pattern) for pattern in self.include):
                continue
            if any(glob_matches(relative, pattern) for pattern in self.exclude):
                continue
            stat = path.stat()
            files.append(
                SourceFile(uri=path.as_uri(), path=path, size=stat.st_size, mtime=stat.st_mtime)
            )
        return files
