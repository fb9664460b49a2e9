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


def test_links_out_of_the_folder_and_special_files_are_reported_never_read(
    tmp_path: Path,
) -> None:
    import os
    import socket

    root, outside = tmp_path / "docs", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (root / "a.md").write_text("# A\n")
    (root / "escape.txt").symlink_to("../outside/secret.txt")
    (root / "inside.md").symlink_to("a.md")
    (root / "broken.md").symlink_to("nowhere.md")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    os.mkfifo(root / "pipe.md")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sub" / "sock.md"))

    source = LocalFolderSource(root)
    listed = sorted(item.name for item in source.list_items())
    assert listed == ["a.md", "inside.md"], "a link inside the folder is read"
    reasons = {uri.rsplit("/", 1)[1]: reason for uri, reason in source.skipped()}
    assert reasons["escape.txt"].startswith("a link to outside the source folder")
    assert reasons["broken.md"] == "a broken link"
    assert reasons["linked"].startswith("a link to a folder, not followed")
    assert reasons["pipe.md"] == "not a regular file (a FIFO); never opened"
    assert reasons["sock.md"] == "not a regular file (a socket); never opened"
    server.close()

    following = LocalFolderSource(root, follow_symlinks=True)
    names = sorted(item.name for item in following.list_items())
    assert "escape.txt" in names and "linked/secret.txt" in names, "the setting allows it"
    assert not any(name.startswith("loop/") for name in names), "a loop is walked once"
    loops = {uri.rsplit("/", 1)[1]: reason for uri, reason in following.skipped()}
    assert loops["loop"].startswith("a link to a folder already read"), "and reported"


def test_a_link_changed_to_point_outside_after_listing_is_not_read(tmp_path: Path) -> None:
    from ingest.types import ParseError

    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n")
    (tmp_path / "secret.txt").write_text("not yours")
    (root / "b.md").symlink_to("a.md")
    source = LocalFolderSource(root)
    (item,) = [i for i in source.list_items() if i.name == "b.md"]
    (root / "b.md").unlink()
    (root / "b.md").symlink_to("../secret.txt")
    with pytest.raises(ParseError, match="outside the source folder"):
        source.fetch(item, tmp_path)


def test_an_ingest_reports_what_it_skipped_and_indexes_none_of_it(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from config.settings import Settings
    from tests.conftest import ingest_folder

    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# Pumps\n\nImpellers wear.\n")
    (tmp_path / "secret.md").write_text("# Secret\n\nThe vault code is 1234.\n")
    (root / "escape.md").symlink_to("../secret.md")
    report = ingest_folder(Settings(data_dir=tmp_path / "data"), root, embedder)
    assert [d.uri.rsplit("/", 1)[1] for d in report.new] == ["a.md"]
    assert [(d.uri.rsplit("/", 1)[1], d.reason.split(",")[0]) for d in report.skipped] == [
        ("escape.md", "a link to outside the source folder")
    ]
    assert report.to_dict()["skipped"] == 1 and not report.failed


def test_odd_names_and_empty_files_are_ingested_or_reported_accurately(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    """A name that is not UTF-8 is ingested (findable, shown with U+FFFD); a zero-byte file is
    reported as empty, not as a scanned PDF."""
    import os

    from config.settings import Settings
    from tests.conftest import ingest_folder

    root = tmp_path / "docs"
    root.mkdir()
    odd = os.fsdecode(os.fsencode(root) + b"/caf\xe9-menu.md")
    Path(odd).write_text("# Cafe menu\n\nEspresso, cortado and a flat white.\n")
    (root / "empty.pdf").write_bytes(b"")
    (root / "empty.md").write_bytes(b"")
    settings = Settings(data_dir=tmp_path / "data")
    report = ingest_folder(settings, root, embedder)
    assert [d.uri.rsplit("/", 1)[1] for d in report.new] == ["caf%E9-menu.md"]
    from composition.components import Components

    store = Components(settings).store()
    try:
        paths = {p["path"] for _, p in store.scroll("docs__v1", ["path"])}
    finally:
        store.close()
    assert paths == {"caf\ufffd-menu.md"}
    assert sorted((d.uri.rsplit("/", 1)[1], d.reason) for d in report.failed) == [
        ("empty.md", "an empty file (0 bytes)"),
        ("empty.pdf", "an empty file (0 bytes)"),
    ]


def test_files_and_folders_it_may_not_read_are_reported_as_unreadable(tmp_path: Path) -> None:
    """Listed by a user who may not read them (root reads everything, so as root the listing runs
    in a forked child that drops to `nobody`)."""
    import json
    import os
    import stat
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="sluice-perm-"))  # tmp_path is root's alone
    try:
        shared.chmod(0o755)
        root = shared / "docs"
        (root / "private").mkdir(parents=True)
        for name in ("a.md", "locked.md", "private/b.md"):
            (root / name).write_text("# Title\n\nText.\n")
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        root.chmod(0o755)
        (root / "locked.md").chmod(0)
        (root / "private").chmod(0)
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child: drop to nobody, list, report, exit
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                source = LocalFolderSource(root)
                items = [item.name for item in source.list_items()]
                os.write(writer, json.dumps({"items": items, "skipped": source.skipped()}).encode())
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader) as output:
            listed = json.loads(output.read())
        os.waitpid(child, 0)
        assert listed["items"] == ["a.md"]
        reasons = {uri.removeprefix(root.as_uri()): reason for uri, reason in listed["skipped"]}
        assert reasons == {
            "/locked.md": "unreadable: this process may not read it (permission denied)",
            "/private/": "unreadable: a folder this process may not list (Permission denied)",
        }
    finally:
        for path in (root / "private", root / "locked.md"):
            path.chmod(stat.S_IRWXU)
        import shutil

        shutil.rmtree(shared)
