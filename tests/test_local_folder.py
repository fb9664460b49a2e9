from __future__ import annotations

from pathlib import Path

import pytest

from ingest.sources.local_folder import LocalFolderSource, glob_matches
from ingest.types import SourceUnavailable


def _tree(root: Path) -> None:
    for name in ("a.md", "sub/b.md", "sub/deep/c.pdf", ".hidden/d.md", "sub/e.txt"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_glob_double_star_matches_zero_or_more_folders() -> None:
    assert glob_matches("a.md", "**/*.md")
    assert glob_matches("x/y/a.md", "**/*.md")
    assert not glob_matches("a.pdf", "**/*.md")


def test_lists_recursively_with_include_and_exclude(tmp_path: Path) -> None:
    _tree(tmp_path)
    source = LocalFolderSource(tmp_path, include=["**/*.md", "**/*.pdf"], exclude=[".hidden/**"])
    names = sorted(item.name for item in source.list_items())
    assert names == ["a.md", "sub/b.md", "sub/deep/c.pdf"]


def test_uri_is_the_stable_document_id(tmp_path: Path) -> None:
    _tree(tmp_path)
    items = LocalFolderSource(tmp_path).list_items()
    assert all(i.uri.startswith("file:///") for i in items)
    assert all(i.fingerprint for i in items), "mtime and size, the cheap change signal"


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        LocalFolderSource(tmp_path / "nope").list_items()
