"""`/metrics`' ingest figures as running totals over a real run history: the same as summing
the whole history afresh after any sequence of runs starting, ending and scrapes, while a scrape
reads only the runs since the last one."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from composition.components import Components
from config.settings import Settings
from ingest.manifest import Manifest, RunRecord
from retrieval_api.run_totals import RunTotals

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(["docs", "live"])),
        st.tuples(st.just("finish"), st.integers(0, 5)),
        st.tuples(st.just("scrape"), st.just(0)),
    ),
    max_size=40,
)


class _Counting:
    """The manifest, counting the run rows it hands out."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest, self.rows = manifest, 0

    def runs_from(self, first_run_id: int, limit: int = 10_000) -> list[RunRecord]:
        runs = self.manifest.runs_from(first_run_id, limit)
        self.rows += len(runs)
        return runs


def _report(new: int) -> dict[str, Any]:
    return {"new": new, "chunks": 2 * new, "lag_s": new / 10, "cost": {"cpu_seconds": 0.5}}


@settings(max_examples=30, deadline=None)
@given(steps=STEPS)
def test_running_totals_equal_a_recount_of_the_whole_history(steps: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Components(Settings(data_dir=Path(scratch))).manifest()
        try:
            totals, running = RunTotals(), None
            for step, value in [*steps, ("scrape", 0)]:
                if step == "start":  # a run left running is interrupted by the next
                    running = manifest.start_run(value)
                elif step == "finish" and running is not None:
                    manifest.finish_run(running, _report(value), "completed")
                    running = None
                elif step == "scrape":
                    kept = totals.figures("docs", manifest)
                    afresh = RunTotals().figures("docs", manifest)
                    assert kept.counted == afresh.counted
                    assert (kept.lag, kept.last_success) == (afresh.lag, afresh.last_success)
        finally:
            manifest.close()


def test_a_scrape_reads_only_the_runs_since_the_last_and_those_still_running(
    tmp_path: Path,
) -> None:
    manifest = Components(Settings(data_dir=tmp_path)).manifest()
    try:
        for _ in range(50):
            manifest.finish_run(manifest.start_run("live"), _report(1), "completed")
        long_run = manifest.start_run("docs")
        counting, totals = _Counting(manifest), RunTotals()
        first = totals.figures("docs", counting)
        assert counting.rows == 51 and first.counted[("runs", "live", "completed")] == 50
        assert first.counted[("runs", "docs", "running")] == 1
        counting.rows = 0
        again = totals.figures("docs", counting)
        assert counting.rows == 1, "only the run still running"
        assert again.counted == first.counted
        manifest.finish_run(long_run, _report(3), "completed")
        counting.rows = 0
        ended = totals.figures("docs", counting)
        assert counting.rows == 1
        assert ended.counted[("documents", "docs", "new")] == 3
        assert ("runs", "docs", "running") not in ended.counted
        assert ended.lag["live"] == 0.1 and ended.counted[("cpu_seconds", "live")] == 25
    finally:
        manifest.close()
