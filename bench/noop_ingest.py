"""Wall time of an ingest with nothing to do, through the CLI as a user runs it.

Interleaves two ways of recording the run in Prefect: the data dir's own server, started once
and reused (the default), and a temporary server per command (what Prefect does by itself;
`SLUICE_PREFECT_SERVER_IDLE_MINUTES=0`). The folder must already be ingested into DATA_DIR (see
`bench/ingest_docs.sh`), so every run here is a no-op; the script checks that it was.

    .venv/bin/python bench/noop_ingest.py .bench/docs ../shared/data/docs --runs 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_run(data_dir: Path, folder: Path, idle_minutes: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    env |= {"SLUICE_DATA_DIR": str(data_dir), "SLUICE_PREFECT_SERVER_IDLE_MINUTES": idle_minutes}
    command = [sys.executable, "-m", "sluice", "ingest", str(folder), "--json"]
    command += ["--exclude", "MANIFEST.tsv"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    report = json.loads(done.stdout)
    work = [report[key] for key in ("new", "changed", "deleted", "failed")]
    if done.returncode != 0 or any(work):
        raise SystemExit(f"not a no-op (exit {done.returncode}, new/changed/deleted/failed {work})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    modes = {"own server, reused": "60", "temporary server per command": "0"}
    one_run(args.data_dir, args.folder, "60")  # starts the data dir's server once
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.runs):
        for mode, idle in modes.items():
            times[mode].append(one_run(args.data_dir, args.folder, idle))
    for mode, seconds in times.items():
        print(
            f"{mode:30} median {statistics.median(seconds):5.2f} s  "
            f"(min {min(seconds):.2f}, max {max(seconds):.2f}, n={len(seconds)})"
        )
    own, temporary = (statistics.median(times[mode]) for mode in modes)
    print(f"ratio temporary/own: {temporary / own:.1f}x")


if __name__ == "__main__":
    main()
