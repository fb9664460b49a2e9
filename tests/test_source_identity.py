"""A document is its source's: two sources that list the same file (overlapping folders, one
per tenant) each keep their own copy, whatever order they are ingested in, and a key that is
not admin is shown each document by its public form, never by the server's path."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chunking.types import Chunk, Chunker
from config.settings import Settings
from config.sources import LocalFolderConfig
from ingest.types import ParsedDocument
from pipelines.report import IngestReport

TOP = ("top0.md", "top1.md", "top2.md")
SUB = ("s0.md", "s1.md", "s2.md", "s3.md", "s4.md")
WORDS = "amber basalt cobalt dolomite emerald feldspar garnet hematite ilmenite jasper".split()


def _folder(root: Path) -> Path:
    """`ov/` with three files of its own and five in `ov/sub/`; each file one chunk, with a
    word of its own."""
    for n, name in enumerate((*TOP, *(f"sub/{s}" for s in SUB))):
        path = root / "ov" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {WORDS[n].title()}\n\nA note on {WORDS[n]} and shared rock.\n")
    return root / "ov"


def _ingest(
    settings: Settings, config: LocalFolderConfig, embedder: Any, legacy: bool = False
) -> IngestReport:
    """The ingest pipeline (`sync_source`, as the flow runs it) for one named source, parsing
    in this process. `legacy`: with the chunker as it was before documents had an origin."""
    from composition.components import Components
    from pipelines.ingest_sync import SyncOptions, sync_source

    parts = Components(settings)
    store, manifest = parts.store(), parts.manifest()
    try:
        ingest = parts.ingest_parts(store, embedder)
        if legacy:
            ingest = replace(ingest, chunker=_BeforeOrigins(ingest.chunker))
        options = SyncOptions(parse_workers=1, backoff_s=0.0, tenant=config.tenant)
        return sync_source(parts.source(config), config.name, ingest, manifest, options)
    finally:
        manifest.close()
        store.close()


class _BeforeOrigins:
    """Versions from content and config alone, as every index made before origins has them."""

    def __init__(self, chunker: Chunker) -> None:
        self.chunker = chunker

    def run(
        self, document: ParsedDocument, config_fingerprint: str = "", origin: str = ""
    ) -> list[Chunk]:
        return self.chunker.run(document, config_fingerprint)


def _points(settings: Settings) -> dict[str, tuple[str, str, str, int]]:
    """Every point of the index: id -> (source, tenant, path, ordinal)."""
    from composition.components import Components

    store = Components(settings).store()
    try:
        collection = store.resolve_alias(settings.index_name)
        assert collection is not None
        fields = ["source", "tenant", "path", "ordinal"]
        return {
            point_id: (p["source"], p["tenant"], p["path"], p["ordinal"])
            for point_id, p in store.scroll(collection, fields)
        }
    finally:
        store.close()


def _copies(settings: Settings) -> Counter[tuple[str, str, str, int]]:
    return Counter(_points(settings).values())


def _expected(a_files: tuple[str, ...], b_files: tuple[str, ...]) -> Counter[Any]:
    return Counter([*(("a", "a", f, 0) for f in a_files), *(("b", "b", f, 0) for f in b_files)])


def test_overlapping_sources_of_two_tenants_each_keep_their_own_copy_in_either_order(
    tmp_path: Path, embedder: Any
) -> None:
    ov = _folder(tmp_path)
    a = LocalFolderConfig(name="a", path=ov, tenant="a")
    b = LocalFolderConfig(name="b", path=ov / "sub", tenant="b")
    a_files = (*TOP, *(f"sub/{s}" for s in SUB))
    for first, second in ((a, b), (b, a)):
        settings = Settings(data_dir=tmp_path / f"data-{first.name}-first")
        ids: set[str] | None = None
        for round_ in range(3):
            for config in (first, second):
                report = _ingest(settings, config, embedder)
                assert report.deleted == [] and not report.deletions_held, (config.name, round_)
                listed = len(a_files) if config is a else len(SUB)
                assert len(report.new) == (listed if round_ == 0 else 0), (config.name, round_)
                assert report.changed == [] and report.embedded <= listed
            assert _copies(settings) == _expected(a_files, SUB), (first.name, round_)
            points = set(_points(settings))
            assert ids is None or points == ids, "a repeated run rewrites nothing"
            ids = points

        # A file gone from the folders both sources list: each source removes its own copy.
        (ov / "sub" / "s4.md").unlink()
        assert _ingest(settings, a, embedder).deleted == [(ov / "sub" / "s4.md").as_uri()]
        assert _copies(settings) == _expected(a_files[:-1], SUB), "b's copy stays until b runs"
        assert _ingest(settings, b, embedder).deleted == [(ov / "sub" / "s4.md").as_uri()]
        assert _copies(settings) == _expected(a_files[:-1], SUB[:-1])
        (ov / "sub" / "s4.md").write_text("# Jasper\n\nA note on jasper and shared rock.\n")


# -- an index and a manifest made before documents had an origin ------------------------------

_OLD_DOCUMENTS = """
CREATE TABLE documents_before (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    doc_version TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
"""


def _manifest_as_before_origins(path: Path, pending: str) -> None:
    """The manifest's documents keyed by doc_id alone, as before (and before its schema was
    versioned: no revision, none of the columns revisions added); `pending`'s row left as a
    crash between writing its points and recording them leaves it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "BEGIN;" + _OLD_DOCUMENTS + "INSERT INTO documents_before SELECT * FROM documents;"
        "DROP TABLE documents;"
        "ALTER TABLE documents_before RENAME TO documents;"
        "CREATE INDEX documents_by_source ON documents (source);"
        "DROP TABLE alembic_version;"
        "ALTER TABLE run_outcomes DROP COLUMN host;"
        "ALTER TABLE run_outcomes DROP COLUMN parent_run_id;"
        "ALTER TABLE run_outcomes DROP COLUMN partition;"
        "COMMIT;"
    )
    db.execute("UPDATE documents SET status = 'pending' WHERE doc_id = ?", (pending,))
    db.close()


def test_an_index_from_before_origins_is_taken_over_without_rewrites_deletes_or_duplicates(
    tmp_path: Path, embedder: Any
) -> None:
    from ingest.manifest import Manifest

    ov = _folder(tmp_path)
    settings = Settings(data_dir=tmp_path / "data")
    a = LocalFolderConfig(name="a", path=ov)
    b = LocalFolderConfig(name="b", path=ov / "sub")
    _ingest(settings, a, embedder, legacy=True)
    pending = (ov / "top2.md").as_uri()
    _manifest_as_before_origins(settings.manifest_path(), pending)
    before = _points(settings)
    (ov / "top1.md").write_text("# Basalt\n\nA note on basalt, edited since.\n")

    upgraded = _ingest(settings, a, embedder)
    assert upgraded.new == [] and upgraded.deleted == [] and not upgraded.deletions_held
    assert sorted((d.uri.rsplit("/", 1)[1], d.reason) for d in upgraded.changed) == [
        ("top1.md", "content"),
        ("top2.md", "interrupted"),
    ]
    assert upgraded.unchanged == 6 and upgraded.embedded == 1, "only the edited text"
    after = _points(settings)
    kept = {i: p for i, p in before.items() if p[2] not in ("top1.md", "top2.md")}
    assert kept.items() <= after.items(), "unchanged documents keep their points and ids"
    a_files = (*TOP, *(f"sub/{s}" for s in SUB))
    default = Counter(("a", "default", f, 0) for f in a_files)
    assert _copies(settings) == default, "the rewritten ones replaced their old points"

    manifest = Manifest(settings.manifest_path())
    try:
        assert len(manifest.documents("a")) == len(a_files)
    finally:
        manifest.close()
    for config in (b, a, b):
        again = _ingest(settings, config, embedder)
        assert again.deleted == [] and again.changed == []
    assert after.items() <= _points(settings).items(), "b took none of a's points"
    assert _copies(settings) == default + Counter(("b", "default", s, 0) for s in SUB)


# -- what a key that is not admin is shown, and filters by ------------------------------------


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    """Sources `a` (folder `ov/`, tenant a) and `b` (`ov/sub`, tenant b) in one index, served
    with keys required; a key per tenant and an admin key."""
    from retrieval_api.app import create_app
    from retrieval_api.keys import KeyStore

    root = tmp_path_factory.mktemp("overlap")
    ov = _folder(root)
    settings = Settings(data_dir=root / "data", auth="required")
    for config in (
        LocalFolderConfig(name="a", path=ov, tenant="a"),
        LocalFolderConfig(name="b", path=ov / "sub", tenant="b"),
    ):
        _ingest(settings, config, embedder)
    keys = KeyStore(settings.api_keys_path)
    issued = {tenant: keys.create([tenant])[0] for tenant in ("a", "b")}
    issued["admin"] = keys.create([], scope="admin")[0]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client, issued, ov


def _hits(client: TestClient, key: str, query: str, **filters: Any) -> list[dict[str, Any]]:
    answer = client.post(
        "/retrieve",
        json={"query": query, "mode": "bm25", "top_k": 20, "filters": filters},
        headers={"X-API-Key": key},
    )
    assert answer.status_code == 200, answer.text
    hits: list[dict[str, Any]] = answer.json()["hits"]
    return hits


def test_each_tenants_key_finds_its_own_copy_of_a_shared_file(
    served: tuple[TestClient, dict[str, str], Path],
) -> None:
    client, keys, ov = served
    s1 = WORDS[len(TOP) + 1]  # the word of sub/s1.md
    assert [h["uri"] for h in _hits(client, keys["a"], s1)] == ["a/sub/s1.md"]
    assert [h["uri"] for h in _hits(client, keys["b"], s1)] == ["b/s1.md"]
    admin = _hits(client, keys["admin"], s1)
    assert [h["uri"] for h in admin] == [(ov / "sub" / "s1.md").as_uri()] * 2
    assert len({h["chunk_id"] for h in admin}) == 2, "two copies, two points"


def test_a_key_that_is_not_admin_is_shown_no_server_path_and_filters_by_what_it_was_shown(
    served: tuple[TestClient, dict[str, str], Path],
) -> None:
    client, keys, ov = served
    shown = {h["doc_id"] for h in _hits(client, keys["a"], "shared rock")}
    assert shown == {f"a/{f}" for f in (*TOP, *(f"sub/{s}" for s in SUB))}
    assert not any(str(ov) in doc_id or "://" in doc_id for doc_id in shown)
    for doc_id in ("a/top0.md", "a/sub/s1.md"):
        only = _hits(client, keys["a"], "shared rock", doc_ids=[doc_id])
        assert [h["doc_id"] for h in only] == [doc_id], "a filter by the id it was shown"
    both = _hits(client, keys["a"], "shared rock", doc_ids=["a/top0.md", "a/top1.md"])
    assert sorted(h["doc_id"] for h in both) == ["a/top0.md", "a/top1.md"]
    assert _hits(client, keys["b"], "shared rock", doc_ids=["a/sub/s1.md"]) == [], "a's own"
    assert [h["doc_id"] for h in _hits(client, keys["b"], "rock", doc_ids=["b/s1.md"])] == [
        "b/s1.md"
    ]

    grouped = client.post(
        "/retrieve",
        json={"query": "shared rock", "mode": "bm25", "top_k": 20, "group_by": "doc"},
        headers={"X-API-Key": keys["a"]},
    ).json()["groups"]
    assert {g["doc_id"] for g in grouped} == shown, "a group's id is its hits' public one"

    location = (ov / "sub" / "s1.md").as_uri()
    admin = _hits(client, keys["admin"], "shared rock", doc_ids=[location])
    assert [h["doc_id"] for h in admin] == [location] * 2, "an admin sees and filters locations"
