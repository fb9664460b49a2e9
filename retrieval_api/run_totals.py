"""The ingest figures `/metrics` reports from the run history, kept as running totals: each
finished run is read once per API process, so a scrape reads only the runs since the last one.

A live source writes a run per batch of changes (one a second while a folder keeps changing):
summing the whole history at every scrape would cost more with every batch, and any cap on it
would make the counters fall. A run still running is counted as it stands at each scrape and
added to the totals once it ends; one still "running" a day after it started (its process on
another machine, gone without a word) is taken as it stands.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ingest.manifest import RunRecord

SETTLE_AFTER_S = 86_400.0
COST_FIELDS = ("cpu_seconds", "tokens_embedded", "estimated_cost")
PAGE = 10_000


@dataclass
class SourceFigures:
    """Counters by (family, source, *labels), and each source's latest gauges."""

    counted: dict[tuple[str, ...], float] = field(default_factory=dict)
    embed_rate: dict[str, float] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)

    def add(self, run: RunRecord) -> None:
        report = run.report or {}

        def count(key: tuple[str, ...], value: float) -> None:
            self.counted[key] = self.counted.get(key, 0) + value

        count(("runs", run.source, run.state), 1)
        for outcome in ("new", "changed", "unchanged", "deleted", "failed", "skipped"):
            count(("documents", run.source, outcome), float(report.get(outcome) or 0))
        for kind in ("chunks", "embedded", "from_cache"):
            count(("chunks", run.source, kind), float(report.get(kind) or 0))
        for name in COST_FIELDS:
            count((name, run.source), float((report.get("cost") or {}).get(name) or 0))
        embed_s = (report.get("stage_seconds") or {}).get("embed") or 0
        if report.get("embedded") and embed_s:
            self.embed_rate[run.source] = report["embedded"] / embed_s
        if run.state in ("completed", "completed_with_failures") and run.finished_at:
            self.last_success[run.source] = run.finished_at
        if report.get("lag_s") is not None:
            self.lag[run.source] = report["lag_s"]

    def plus(self, runs: list[RunRecord]) -> SourceFigures:
        """These figures with `runs` added, leaving these as they are."""
        figures = SourceFigures(
            dict(self.counted), dict(self.embed_rate), dict(self.last_success), dict(self.lag)
        )
        for run in runs:
            figures.add(run)
        return figures


@dataclass
class _IndexTotals:
    next_run_id: int = 0
    """Every run before it has been read: ended ones are in `settled`, others in `running`."""
    settled: SourceFigures = field(default_factory=SourceFigures)
    running: set[int] = field(default_factory=set)


class RunTotals:
    """Per index, the totals of its ended runs, the runs not ended yet, and where to read on."""

    def __init__(self) -> None:
        self._indexes: dict[str, _IndexTotals] = {}
        self._lock = threading.Lock()  # two scrapes at once read each run once between them

    def figures(self, index: str, manifest: Any) -> SourceFigures:
        """The index's figures now: the settled totals plus the runs not ended yet, after
        reading from `manifest` (an open `Manifest`) the runs since the last scrape."""
        with self._lock:
            return self._figures(self._indexes.setdefault(index, _IndexTotals()), manifest)

    def _figures(self, totals: _IndexTotals, manifest: Any) -> SourceFigures:
        running: list[RunRecord] = []

        def take(runs: list[RunRecord]) -> None:
            for run in runs:
                if _ended(run):
                    totals.settled.add(run)
                else:
                    running.append(run)

        for run_id in sorted(totals.running):  # each still there, unless dropped meanwhile
            take([run for run in manifest.runs_from(run_id, 1) if run.run_id == run_id])
        while page := manifest.runs_from(totals.next_run_id, PAGE):  # a page at a time
            take(page)
            totals.next_run_id = page[-1].run_id + 1
        totals.running = {run.run_id for run in running}
        return totals.settled.plus(running)


def _ended(run: RunRecord) -> bool:
    return run.state != "running" or time.time() - run.started_at > SETTLE_AFTER_S
