"""What an ingest run reports, for the CLI, `--json`, the manifest's run history and the Prefect
artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.cost import Cost


@dataclass
class DocumentOutcome:
    uri: str
    reason: str
    """new / content / config / retry / interrupted, or why it failed."""
    chunks: int = 0


@dataclass
class IngestReport:
    index: str
    source: str = ""
    tenant: str = ""
    collection: str = ""
    dry_run: bool = False
    files_seen: int = 0
    new: list[DocumentOutcome] = field(default_factory=list)
    changed: list[DocumentOutcome] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    failed: list[DocumentOutcome] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    """Skipped: failed before and unchanged since (`sluice retry-failed` re-drives them)."""
    skipped: list[DocumentOutcome] = field(default_factory=list)
    """Found but never opened: a FIFO, socket or device, a link out of the source folder."""
    deletions_held: str = ""
    chunks: int = 0
    embedded: int = 0
    from_cache: int = 0
    points_in_index: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    """Of a run split into partitions: each partition's counts, its run and flow run ids."""
    live: bool = False
    """A live source's run over the paths of one batch of changes (its reconciles, which list
    everything, are ordinary runs)."""
    lag_s: float | None = None
    """Of a live batch: seconds from its changes being seen to their being searchable."""

    def to_dict(self) -> dict[str, Any]:
        """Counts at the top level; the documents behind them under `documents`."""
        return {
            "index": self.index,
            "source": self.source,
            "tenant": self.tenant,
            "collection": self.collection,
            "dry_run": self.dry_run,
            "files_seen": self.files_seen,
            "new": len(self.new),
            "changed": len(self.changed),
            "unchanged": self.unchanged,
            "deleted": len(self.deleted),
            "failed": len(self.failed),
            "quarantined": len(self.quarantined),
            "skipped": len(self.skipped),
            "deletions_held": self.deletions_held,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "from_cache": self.from_cache,
            "points_in_index": self.points_in_index,
            "seconds": self.seconds,
            "stage_seconds": self.stage_seconds,
            "cost": self.cost.to_dict(),
            "partitions": self.partitions,
            "live": self.live,
            "lag_s": self.lag_s,
            "documents": {
                "new": [asdict(d) for d in self.new],
                "changed": [asdict(d) for d in self.changed],
                "deleted": self.deleted,
                "failed": [asdict(d) for d in self.failed],
                "quarantined": self.quarantined,
                "skipped": [asdict(d) for d in self.skipped],
            },
        }

    def to_markdown(self) -> str:
        title = "Plan (dry run)" if self.dry_run else "Ingest"
        collection = self.collection or "no collection yet"
        lines = [
            f"### {title}: `{self.source}` into `{self.index}` ({collection})",
            "",
            "| new | changed | unchanged | deleted | failed | chunks written | embedded "
            "| from cache | points in index | seconds |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {len(self.new)} | {len(self.changed)} | {self.unchanged} | {len(self.deleted)} "
            f"| {len(self.failed)} | {self.chunks} | {self.embedded} | {self.from_cache} "
            f"| {self.points_in_index} | {self.seconds:.1f} |",
        ]
        if self.stage_seconds:
            lines += [
                "",
                "| " + " | ".join(self.stage_seconds) + " |",
                "|" + "---:|" * len(self.stage_seconds),
                "| " + " | ".join(f"{v:.1f} s" for v in self.stage_seconds.values()) + " |",
            ]
        lines += ["", f"**Cost:** {self.cost.describe()}"]
        if self.deletions_held:
            lines += ["", f"**Deletions held:** {self.deletions_held}"]
        rows = [(d.uri, "new", d.reason) for d in self.new]
        rows += [(d.uri, "changed", d.reason) for d in self.changed]
        rows += [(uri, "deleted", "gone from the source") for uri in self.deleted]
        rows += [(d.uri, "failed", d.reason) for d in self.failed]
        rows += [
            (uri, "quarantined", "skipped until changed or retried") for uri in self.quarantined
        ]
        rows += [(d.uri, "skipped", d.reason) for d in self.skipped]
        if rows:
            lines += ["", "| document | outcome | reason |", "|---|---|---|"]
            lines += [f"| {uri} | {what} | {why.replace('|', '/')} |" for uri, what, why in rows]
        return "\n".join(lines)
