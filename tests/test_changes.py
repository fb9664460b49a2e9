"""The change plan, as a pure function of a listing and the manifest."""

from __future__ import annotations

from ingest.changes import plan_changes
from ingest.manifest import DocumentRecord
from ingest.types import SourceItem


def _item(name: str, fingerprint: str = "f1") -> SourceItem:
    return SourceItem(uri=f"s3://b/{name}", name=name, size=1, fingerprint=fingerprint)


def _record(name: str, status: str = "indexed", fingerprint: str = "f1") -> DocumentRecord:
    return DocumentRecord(
        f"s3://b/{name}",
        "src",
        fingerprint,
        "hash",
        "cfg",
        "v1",
        1,
        status,  # type: ignore[arg-type]
    )


def _reasons(plan) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.item.name: c.reason for c in plan.candidates}


def test_each_kind_of_change_is_classified() -> None:
    known = {
        r.doc_id: r
        for r in [
            _record("same.md"),
            _record("edited.md"),
            _record("pending.md", "pending"),
            _record("failed.md", "failed"),
            _record("stuck.md", "quarantined"),
            _record("fixed.md", "quarantined"),
            _record("gone.md"),
        ]
    }
    items = [
        _item("same.md"),
        _item("edited.md", "f2"),
        _item("pending.md"),
        _item("failed.md"),
        _item("stuck.md"),
        _item("fixed.md", "f2"),
        _item("fresh.md"),
    ]
    plan = plan_changes(items, known, lambda item: "cfg", max_deleted_fraction=0.5)
    assert [i.name for i in plan.unchanged] == ["same.md"]
    assert [i.name for i in plan.quarantined] == ["stuck.md"]
    assert _reasons(plan) == {
        "edited.md": "content",
        "pending.md": "interrupted",
        "failed.md": "retry",
        "fixed.md": "retry",
        "fresh.md": "new",
    }
    assert plan.deleted == ["s3://b/gone.md"] and not plan.deletions_held


def test_a_config_change_and_an_unknown_fingerprint_make_candidates() -> None:
    known = {r.doc_id: r for r in [_record("a.pdf"), _record("b.html", fingerprint="")]}
    plan = plan_changes(
        [_item("a.pdf"), _item("b.html", "")],
        known,
        lambda item: "other" if item.name == "a.pdf" else "cfg",
    )
    assert _reasons(plan) == {"a.pdf": "config", "b.html": "content"}


def test_deletions_above_the_fraction_are_held() -> None:
    known = {r.doc_id: r for r in [_record(f"d{i}") for i in range(10)]}
    kept = [_item(f"d{i}") for i in range(7)]
    held = plan_changes(kept, known, lambda item: "cfg", max_deleted_fraction=0.2)
    assert len(held.deleted) == 3 and "3 of 10" in held.deletions_held
    allowed = plan_changes(kept, known, lambda item: "cfg", max_deleted_fraction=0.3)
    assert not allowed.deletions_held
    empty = plan_changes([], known, lambda item: "cfg", max_deleted_fraction=0.9)
    assert empty.deletions_held, "an empty listing never wipes an index"


def test_a_quarantined_file_is_read_again_when_how_it_is_read_changes() -> None:
    """As when Tesseract is installed, or SLUICE_OCR turned on, after a scanned PDF failed."""
    known = {r.doc_id: r for r in [_record("scan.pdf", "quarantined")]}
    same = plan_changes([_item("scan.pdf")], known, lambda item: "cfg")
    assert [i.name for i in same.quarantined] == ["scan.pdf"]
    changed = plan_changes([_item("scan.pdf")], known, lambda item: "cfg+ocr")
    assert _reasons(changed) == {"scan.pdf": "retry"}


def test_what_the_source_could_not_read_is_kept_not_deleted() -> None:
    names = ["a.md", "locked.md", "private/b.md", "private/deep/c.md", "gone.md"]
    known = {r.doc_id: r for r in [_record(name) for name in names]}
    plan = plan_changes(
        [_item("a.md")],
        known,
        lambda item: "cfg",
        max_deleted_fraction=1.0,
        kept=["s3://b/locked.md", "s3://b/private/"],
    )
    assert plan.deleted == ["s3://b/gone.md"]
