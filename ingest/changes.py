"""Deciding what a run must do: compare a source's listing with the manifest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ingest.manifest import DocumentRecord
from ingest.types import SourceItem

ChangeReason = Literal["new", "content", "config", "retry", "interrupted"]


@dataclass(frozen=True)
class Candidate:
    """A document the run must read: new, or possibly changed (the content hash decides)."""

    item: SourceItem
    reason: ChangeReason
    config_fingerprint: str
    record: DocumentRecord | None


@dataclass
class ChangePlan:
    candidates: list[Candidate] = field(default_factory=list)
    unchanged: list[SourceItem] = field(default_factory=list)
    quarantined: list[SourceItem] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    deletions_held: str = ""
    """Why `deleted` is not acted on (a listing that shrank suspiciously); empty when it is."""


def plan_changes(
    items: Sequence[SourceItem],
    known: dict[str, DocumentRecord],
    config_fingerprint: Callable[[SourceItem], str],
    max_deleted_fraction: float = 0.2,
    kept: Sequence[str] = (),
    population: int | None = None,
) -> ChangePlan:
    """Unchanged documents are recognised by fingerprint and config alone, without being read.

    A known document missing from `items` is deleted, unless its uri is in `kept` or below one
    of its folders (uris ending with "/"): what the source could not read, not what is gone.
    `population`: the source's known documents, where `known` is only part of them (a live
    batch's paths); the delete guard weighs deletions against it.

    >>> plan = plan_changes(source.list_items(), manifest.documents("docs"), fingerprint_of)
    ... # doctest: +SKIP
    """
    plan = ChangePlan()
    listed = set()
    for item in items:
        listed.add(item.uri)
        record = known.get(item.uri)
        config = config_fingerprint(item)
        reason: ChangeReason | None
        if record is None:
            reason = "new"
        elif record.status == "pending":
            reason = "interrupted"
        elif (
            record.status == "quarantined"
            and record.fingerprint == item.fingerprint
            and record.config_fingerprint == config
        ):  # a file that failed is read again once it, or how it would be read, changes
            plan.quarantined.append(item)
            continue
        elif record.status != "indexed":
            reason = "retry"
        elif record.config_fingerprint != config:
            reason = "config"
        elif item.fingerprint and item.fingerprint == record.fingerprint:
            reason = None
        else:
            reason = "content"
        if reason is None:
            plan.unchanged.append(item)
        else:
            plan.candidates.append(Candidate(item, reason, config, record))
    folders = tuple(uri for uri in kept if uri.endswith("/"))
    plan.deleted = sorted(
        doc_id
        for doc_id in known
        if doc_id not in listed and doc_id not in kept and not doc_id.startswith(folders)
    )
    present = len(known) if population is None else population
    if plan.deleted and len(plan.deleted) > max_deleted_fraction * present:
        plan.deletions_held = (
            f"the listing lost {len(plan.deleted)} of {present} known documents "
            f"({len(plan.deleted) / present:.0%}, above the {max_deleted_fraction:.0%} limit); "
            "nothing was deleted. If the documents are really gone, rerun with a higher "
            "SLUICE_MAX_DELETED_FRACTION"
        )
    return plan
