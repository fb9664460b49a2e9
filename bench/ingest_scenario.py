"""The incremental-ingest scenario on a copy of a folder, through the real CLI.

    .venv/bin/python bench/ingest_scenario.py ../shared/data/docs

Runs: first ingest; one file edited, one deleted, one added; a settings change (parse strategy,
which shapes only PDFs); a dry run before each write; an unchanged rerun. Prints each run's
counts, embeddings computed vs cached, points before/after and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sluice(args: list[str], env: dict[str, str]) -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report: dict[str, object] = json.loads(done.stdout)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def show(step: str, report: dict[str, object], points_before: int | None) -> None:
    keys = ("new", "changed", "unchanged", "deleted", "failed", "embedded", "from_cache")
    counts = " ".join(f"{k}={report[k]}" for k in keys)
    docs = report["documents"]
    assert isinstance(docs, dict)
    named = {
        kind: [str(d["uri"] if isinstance(d, dict) else d).rsplit("/", 1)[-1] for d in docs[kind]]
        for kind in ("new", "changed", "deleted")
        if docs[kind] and len(docs[kind]) <= 12
    }
    print(
        f"| {step} | {counts} | {points_before} -> {report['points_in_index']} "
        f"| {report['seconds']} s (wall {report['wall_s']} s) | {json.dumps(named)} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="sluice-scenario-"))
    corpus = scratch / "docs"
    shutil.copytree(args.folder, corpus, ignore=shutil.ignore_patterns("MANIFEST.tsv"))
    env = dict(os.environ, SLUICE_DATA_DIR=str(scratch / "data"), PREFECT_LOGGING_LEVEL="ERROR")
    target = ["ingest", str(corpus)]
    print("| step | counts | points | seconds | documents |\n|---|---|---|---|---|")
    first = sluice(target, env)
    show("first ingest", first, 0)
    points = int(str(first["points_in_index"]))

    edited = corpus / "md" / "installation.md"
    edited.write_text(
        edited.read_text() + "\n\n## Added section\n\nA paragraph added by the edit.\n"
    )
    deleted = sorted((corpus / "txt").iterdir())[0]
    deleted.unlink()
    (corpus / "md" / "added.md").write_text("# Added\n\nA new document about valve maintenance.\n")
    show("dry run (edit, delete, add)", sluice([*target, "--dry-run"], env), points)
    second = sluice(target, env)
    show("edit + delete + add", second, points)
    points = int(str(second["points_in_index"]))

    env_auto = dict(env, SLUICE_PARSE_STRATEGY="auto")
    show("dry run (parse strategy auto)", sluice([*target, "--dry-run"], env_auto), points)
    third = sluice(target, env_auto)
    show("settings change: parse strategy", third, points)
    points = int(str(third["points_in_index"]))

    fourth = sluice(target, env_auto)
    show("unchanged rerun", fourth, points)
    print(f"\nunchanged rerun / first run: {fourth['seconds']} / {first['seconds']} s")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
