"""Does the suite still bite? Breaks one named behaviour per package, runs the tests that guard
it, and reports whether they failed; every file is restored whatever happens.

    .venv/bin/python scripts/deliberate_breaks.py            # all of them (~10 min on 2 cores)
    .venv/bin/python scripts/deliberate_breaks.py chunking   # the ones whose package starts so
    .venv/bin/python scripts/deliberate_breaks.py --root ../old   # another tree (a worktree of
                    # an older commit, run with this Python): a renamed file is found by its text

Exits 1 when a break went uncaught. Run it after changing what tests share (fixtures, tiers,
hypothesis profiles): docs/testing.md keeps its latest output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    package: str
    behaviour: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BREAKS = [
    Break(
        "ingest",
        "an unchanged file is read again",
        "ingest/changes.py",
        "elif item.fingerprint and item.fingerprint == record.fingerprint:",
        "elif False:",
        ("tests/test_pipeline.py", "tests/test_incremental.py"),
    ),
    Break(
        "chunking",
        "a chunk's context line is not counted against the token limit",
        "chunking/title_chunker.py",
        "budget = self.max_tokens - (self.tokenizer.count_tokens([context])[0] if context else 0)",
        "budget = self.max_tokens",
        ("tests/test_title_chunker.py",),
    ),
    Break(
        "index",
        "reciprocal rank fusion counts ranks from 1",
        "index/fusion.py",
        "fused[item] = fused.get(item, 0.0) + weight / (k + rank)",
        "fused[item] = fused.get(item, 0.0) + weight / (k + rank + 1)",
        ("tests/test_fusion.py",),
    ),
    Break(
        "index.store",
        "the embedded store ignores must_not",
        "index/store/filters.py",
        "must_not=[_edge_condition(c) for c in payload_filter.must_not] or None,",
        "must_not=None,",
        ("tests/test_qdrant_filters.py", "tests/test_store_contract.py"),
    ),
    Break(
        "retrieval_api",
        "a key of another scope is let through",
        "retrieval_api/access.py",
        'if record.scope not in (scope, "admin"):',
        "if False:",
        ("tests/test_access.py", "tests/test_metrics.py"),
    ),
    Break(
        "pipelines",
        "retention keeps one version too many",
        "pipelines/retention.py",
        "[name for name in others if name != serving][max(0, keep - 1) :]",
        "[name for name in others if name != serving][keep:]",
        (
            "tests/test_reembed.py"
            "::test_reembed_to_another_dimension_and_back_switches_through_the_gate",
        ),
    ),
    Break(
        "flows",
        "a run's report artifact keeps upper-case letters Prefect refuses",
        "flows/artifacts.py",
        'slug = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")',
        'slug = re.sub(r"[^a-zA-Z0-9]+", "-", words).strip("-")',
        ("tests/test_cli.py::test_report_artifacts_are_keyed_by_kind_source_and_deployment",),
    ),
    Break(
        "config",
        "int8 asked for on torch is accepted",
        "config/settings.py",
        'if f"{name}_quantization" in self.model_fields_set:',
        "if False:",
        (
            "tests/test_inference_backends.py"
            "::test_settings_refuse_int8_on_torch_only_when_asked_for",
        ),
    ),
    Break(
        "sluice (CLI)",
        "failed documents exit 0",
        "sluice/cli/ingest_commands.py",
        "        return EXIT_FAILED_DOCUMENTS\n",
        "        return 0\n",
        ("tests/test_cli.py",),
    ),
    Break(
        "sluice_client",
        "Retry-After in seconds is ignored",
        "clients/python/sluice_client/client.py",
        "return max(0.0, float(value))",
        "return None",
        ("tests/test_client.py",),
    ),
]


def located(item: Break, root: Path) -> Path:
    """The break's file under `root`, or, in an older tree where it had another name, the one
    source file of the tree (tests and the virtualenv aside) holding the text to break."""
    path = root / item.path
    if path.is_file():
        return path
    skipped = {".venv", "tests"}
    sources = (
        p for p in sorted(root.rglob("*.py")) if not skipped & set(p.relative_to(root).parts)
    )
    holders = [p for p in sources if item.old in p.read_text()]
    if len(holders) != 1:
        raise SystemExit(f"{item.path}: not in {root}, and {len(holders)} files hold its text")
    return holders[0]


def run(item: Break, root: Path = ROOT) -> tuple[bool, list[str], float]:
    path = located(item, root)
    original = path.read_text()
    if original.count(item.old) != 1:
        raise SystemExit(f"{item.path}: the text to break is not there once: {item.old!r}")
    started = time.monotonic()
    try:
        path.write_text(original.replace(item.old, item.new))
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *item.tests],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)
    return done.returncode == 1 and bool(failed), failed, time.monotonic() - started


def main(only: list[str], root: Path = ROOT) -> int:
    missed = 0
    print("| package | broken behaviour | caught by | s |\n|---|---|---|---:|")
    for item in BREAKS:
        if only and not any(item.package.startswith(o) for o in only):
            continue
        caught, failed, seconds = run(item, root)
        missed += not caught
        by = ", ".join(f"`{f.split('/')[-1]}`" for f in failed) if caught else "**NOT CAUGHT**"
        print(f"| {item.package} | {item.behaviour} | {by} | {seconds:.0f} |", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    tree = ROOT
    if arguments[:1] == ["--root"]:
        tree, arguments = Path(arguments[1]).resolve(), arguments[2:]
    raise SystemExit(main(arguments, tree))
