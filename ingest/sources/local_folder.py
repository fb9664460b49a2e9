"""A local folder as a document source, walked recursively with include/exclude globs."""

from __future__ import annotations

import os
import stat
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import unquote, urlparse

from config.sources import LocalFolderConfig
from ingest.types import (
    UNREADABLE,
    ParseError,
    Scope,
    SourceFile,
    SourceItem,
    SourceUnavailable,
)


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
        follow_symlinks: bool = False,
    ) -> None:
        """`follow_symlinks`: also read what links lead to outside the folder, and descend
        into linked folders. Off, a link is followed only to a file inside the folder."""
        self.root = root.resolve()
        self.include = include or ["**/*"]
        self.exclude = exclude or []
        self.follow_symlinks = follow_symlinks
        self._skipped: list[tuple[str, str]] = []

    @classmethod
    def from_config(cls, config: LocalFolderConfig) -> LocalFolderSource:
        return cls(config.path, config.include, config.exclude, config.follow_symlinks)

    def skipped(self) -> list[tuple[str, str]]:
        """(uri, reason) of what the last listing found but will not read."""
        return list(self._skipped)

    def list_items(self) -> list[SourceItem]:
        """A missing root fails the run (recorded in its history), never reads as "all deleted"."""
        if not self.root.exists():
            raise SourceUnavailable(f"source folder {self.root} does not exist (is it mounted?)")
        self._skipped = []
        if self.root.is_file():
            return self._items([self.root], self.root.parent)
        return self._items(self._walk(self.root), self.root)

    def list_scope(self, scope: Scope) -> list[SourceItem]:
        """Only the changed paths: each a file, a folder walked, or gone (not listed)."""
        self._skipped = []
        if self.root.is_file():
            return [item for item in self.list_items() if scope.holds(item.uri)]
        found: set[Path] = set()
        for uri in sorted(scope.uris):
            path = Path(unquote(urlparse(uri).path))
            if not path.is_relative_to(self.root) or not os.path.lexists(path):
                continue
            try:
                if path.is_dir() and not path.is_symlink():
                    found.update(self._walk(path))
                elif (refused := self._refusal(path)) is None:
                    found.add(path)
                else:
                    self._skip(path, refused)
            except FileNotFoundError:  # gone since the event: not listed, so deleted
                continue
        return self._items(sorted(found), self.root)

    def _items(self, candidates: list[Path], base: Path) -> list[SourceItem]:
        items = []
        for path in candidates:
            relative = path.relative_to(base).as_posix()
            if not selected(relative, self.include, self.exclude):
                continue
            try:
                info = path.stat()
            except FileNotFoundError:  # deleted while the folder was listed
                continue
            items.append(
                SourceItem(
                    uri=path.as_uri(),
                    name=relative,
                    size=info.st_size,
                    fingerprint=f"{info.st_mtime_ns}:{info.st_size}",
                )
            )
        return items

    def _walk(self, top: Path) -> list[Path]:
        """Regular files under `top`, sorted; everything else it meets is `skipped`."""
        found = []
        visited: set[str] = set()
        walk = os.walk(top, onerror=self._unlistable, followlinks=self.follow_symlinks)
        for folder, folders, files in walk:
            real = os.path.realpath(folder)
            if real in visited:  # a link loop, or a second way into one folder
                folders.clear()
                self._skip(
                    Path(folder), "a link to a folder already read (a loop, or a second way in)"
                )
                continue
            visited.add(real)
            here = Path(folder)
            for name in folders:
                if not self.follow_symlinks and (here / name).is_symlink():
                    self._skip(here / name, "a link to a folder, not followed (follow_symlinks)")
            for name in files:
                path = here / name
                if (refused := self._refusal(path)) is None:
                    found.append(path)
                else:
                    self._skip(path, refused)
        return sorted(found)

    def _unlistable(self, error: OSError) -> None:
        """A folder `os.walk` cannot list: reported, never silently missing (which would read
        as its documents deleted)."""
        folder = Path(error.filename)
        reason = f"{UNREADABLE}: a folder this process may not list ({error.strerror})"
        self._skipped.append((folder.as_uri().rstrip("/") + "/", reason))

    def _refusal(self, path: Path) -> str | None:
        """Why `path` is not read, or None: a source never opens a FIFO, socket or device, nor a
        file it may not read, and never follows a link out of its folder unless told to."""
        if path.is_symlink():
            if not path.exists():
                return "a broken link"
            if not self.follow_symlinks and not path.resolve().is_relative_to(self.root):
                return "a link to outside the source folder, not followed (follow_symlinks)"
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
            return f"not a regular file (a {kind}); never opened"
        if not os.access(path, os.R_OK):
            return f"{UNREADABLE}: this process may not read it (permission denied)"
        return None

    def _skip(self, path: Path, reason: str) -> None:
        relative = path.relative_to(self.root).as_posix()
        if selected(relative, self.include, self.exclude):
            self._skipped.append((path.as_uri(), reason))

    def fetch(self, item: SourceItem, folder: Path) -> SourceFile:
        path = self.root if self.root.is_file() else self.root / item.name
        if not os.path.lexists(path):  # deleted or renamed since the listing: no use retrying
            raise ParseError("gone from the folder since it was listed")
        if (refused := self._refusal(path)) is not None:  # it may have changed since listing
            raise ParseError(refused)
        info = path.stat()
        return SourceFile(uri=item.uri, path=path, size=info.st_size, mtime=info.st_mtime)
