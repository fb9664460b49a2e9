"""What `/metrics` costs to read the ingest figures from a long run history: a live folder's
day of one batch a second is ~86,000 runs.

    .venv/bin/python bench/metrics_scrape.py [--runs 100000] [--new 60]

Writes `--runs` finished runs with a live batch's report into a fresh SQLite run history, then
times (median of 5) the running totals (`retrieval_api/run_totals.py`): the first scrape of a
process, which reads the whole history once, and a later one after `--new` more runs (a
minute of batches); and summing the whole history afresh at each scrape, as before.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from composition.components import Components
from config.settings import Settings
from retrieval_api.run_totals import RunTotals

REPORT = {
    "new": 0, "changed": 3, "unchanged": 0, "deleted": 0, "failed": [], "chunks": 6,
    "embedded": 6, "from_cache": 0, "lag_s": 0.35, "live": True,
    "stage_seconds": {"read_parse": 0.01, "embed": 0.05}, "cost": {"cpu_seconds": 0.2},
}  # fmt: skip


def _median_s(call: object, times: int = 5) -> float:
    took = []
    for _ in range(times):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Components(Settings(data_dir=Path(scratch))).manifest()
        started = time.perf_counter()
        for _ in range(args.runs):
            manifest.finish_run(manifest.start_run("live"), REPORT, "completed")
        print(f"wrote {args.runs} runs in {time.perf_counter() - started:.0f} s")
        first = _median_s(lambda: RunTotals().figures("docs", manifest))
        kept = RunTotals()
        kept.figures("docs", manifest)

        def later() -> None:
            for _ in range(args.new):
                manifest.finish_run(manifest.start_run("live"), REPORT, "completed")
            started = time.perf_counter()
            kept.figures("docs", manifest)
            took.append(time.perf_counter() - started)

        took: list[float] = []
        for _ in range(5):
            later()
        print(f"whole history summed at every scrape (before): {first * 1000:.0f} ms per scrape")
        print(f"running totals, a process's first scrape: {first * 1000:.0f} ms")
        print(f"running totals, a scrape after {args.new} new runs: "
              f"{statistics.median(took) * 1000:.1f} ms")  # fmt: skip
        manifest.close()


if __name__ == "__main__":
    main()
