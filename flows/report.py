"""What an ingest run reports, for the CLI, `--json` and the Prefect artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FailedDocument:
    uri: str
    reason: str


@dataclass
class IngestReport:
    index: str
    collection: str = ""
    files_seen: int = 0
    parsed: int = 0
    failed: list[FailedDocument] = field(default_factory=list)
    chunks: int = 0
    points_in_index: int = 0
    embedded: int = 0
    from_cache: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"### Ingest into `{self.index}` ({self.collection})",
            "",
            "| files seen | parsed | failed | chunks | embedded | from cache | points in index "
            "| seconds |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.files_seen} | {self.parsed} | {len(self.failed)} | {self.chunks} "
            f"| {self.embedded} | {self.from_cache} | {self.points_in_index} "
            f"| {self.seconds:.1f} |",
        ]
        if self.failed:
            lines += ["", "| failed document | reason |", "|---|---|"]
            lines += [f"| {f.uri} | {f.reason.replace('|', '/')} |" for f in self.failed]
        return "\n".join(lines)
