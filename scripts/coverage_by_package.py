"""Prints line coverage per top-level package from the `.coverage` file pytest-cov wrote."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import coverage

PACKAGES = (
    "config",
    "state",
    "ingest",
    "chunking",
    "index",
    "pipelines",
    "composition",
    "retrieval_api",
    "flows",
    "sluice",
)


def main() -> None:
    data = coverage.Coverage()
    data.load()
    root = Path.cwd().resolve()
    statements: dict[str, int] = defaultdict(int)
    covered: dict[str, int] = defaultdict(int)
    for filename in data.get_data().measured_files():
        path = Path(filename).resolve()
        if not path.is_relative_to(root):
            continue
        package = path.relative_to(root).parts[0]
        if package not in PACKAGES:
            continue
        _, lines, _, missing, _ = data.analysis2(filename)
        statements[package] += len(lines)
        covered[package] += len(lines) - len(missing)
    print(f"{'package':<15} {'statements':>10} {'covered':>8} {'cover':>7}")
    for package in PACKAGES:
        total = statements[package]
        share = covered[package] / total if total else 0.0
        print(f"{package:<15} {total:>10} {covered[package]:>8} {share:>7.1%}")
    all_total, all_covered = sum(statements.values()), sum(covered.values())
    print(f"{'all':<15} {all_total:>10} {all_covered:>8} {all_covered / all_total:>7.1%}")


if __name__ == "__main__":
    main()
