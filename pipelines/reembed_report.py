"""What a re-embed did, as JSON and as the Markdown a flow run publishes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipelines.cost import Cost


@dataclass
class ReembedReport:
    index: str
    model: str
    previous: str
    built: str
    dimension: int
    outcome: Literal["switched", "rejected"]
    forced: bool
    resumed: bool
    points: int
    embedded: int
    from_cache: int
    embed_seconds: float
    gate: dict[str, Any] | None
    scores: dict[str, dict[str, dict[str, float]]]
    caught_up: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    replay: dict[str, Any] | None = None
    """Logged queries replayed on both versions (`pipelines/replay.py`), where there were any."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReembedReport:
        """A report read back from its JSON (`to_dict`)."""
        return cls(**{**values, "cost": Cost.from_dict(values.get("cost"))})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"### Re-embed of '{self.index}' with `{self.model}`: {self.outcome}",
            "",
            f"{self.previous} → {self.built} ({self.dimension} dimensions, {self.points} points; "
            f"{self.embedded} embedded, {self.from_cache} from the cache"
            f"{', resumed' if self.resumed else ''}).",
        ]
        if self.gate:
            gate = self.gate
            lines += [
                "",
                f"Gate: {gate['metric']} in {gate['mode']} mode on {gate['queries']} golden "
                f"queries, tolerance {gate['tolerance']}: old {gate['old']:.4f}, "
                f"new {gate['new']:.4f} → {'passed' if gate['passed'] else 'failed'}"
                f"{' (forced)' if self.forced and not gate['passed'] else ''}.",
            ]
        if self.replay:
            replayed = self.replay
            verdict = "passed" if replayed["passed"] else "failed"
            role = (
                f"the gate, at least {replayed['min_overlap']}"
                if replayed["decides"]
                else "beside the golden set"
            )
            lines += [
                "",
                f"Replay of {replayed['queries']} logged queries ({role}): overlap@10 "
                f"{replayed['overlap_at_10']:.3f}, rank correlation "
                f"{replayed['rank_correlation']:.3f}, p50 {replayed['baseline_p50_ms']:.1f} → "
                f"{replayed['candidate_p50_ms']:.1f} ms"
                + (f" → {verdict}" if replayed["decides"] else "")
                + ".",
            ]
        elif not self.gate and self.forced:
            lines += ["", "No gate: switched with --force."]
        if self.caught_up:
            lines += [
                "",
                f"Caught up before the switch: {self.caught_up['points']} points written, "
                f"{self.caught_up['stale_versions']} stale document versions removed.",
            ]
        if self.dropped:
            lines += ["", "Dropped by retention: " + ", ".join(self.dropped) + "."]
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())]
        lines += ["", f"Cost: {self.cost.describe()}."]
        return "\n".join(lines)
