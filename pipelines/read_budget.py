"""What one document's read may take, what a worker has taken, and the verdict on the two.

The time limit counts the CPU time the read used (the worker's, with what it started, such as
Tesseract), not the time that passed: a parse worker runs at a low priority beside the embedder,
so on a busy machine a valid document can take many times its CPU time to read, and that is no
fault of the document. A read that waits without using CPU (a fetch that hangs, a lock) is
stopped by a backstop on the time that passed instead: `wall_factor` times the CPU limit.

    budget = ReadBudget(seconds=300, memory_mb=2048)
    overrun(budget, Usage(cpu_s=12.0, rss_mb=900), wall_s=400)  # None: within budget
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

WALL_FACTOR = 10.0
"""A parse worker runs at niceness 10: beside one busy process at niceness 0 on its core it gets
~1/10 of it (the kernel's weights 110 and 1024), so a read within its CPU limit finishes within
10 times it in wall time even then; reads that wait for nothing else are well inside that."""


@dataclass(frozen=True)
class ReadBudget:
    """What one document's read may take; 0 means no limit.

    `seconds`: CPU time; the read is stopped also when `wall_factor * seconds` pass.
    """

    seconds: float = 300.0
    memory_mb: int = 2048
    wall_factor: float = WALL_FACTOR

    @property
    def limited(self) -> bool:
        return self.seconds > 0 or self.memory_mb > 0

    @property
    def wall_seconds(self) -> float:
        return self.seconds * self.wall_factor


NO_BUDGET = ReadBudget(0, 0)


@dataclass(frozen=True)
class Usage:
    """A worker's CPU time so far (seconds, its whole life) and resident memory now (MB), with
    those of the processes it started."""

    cpu_s: float
    rss_mb: float


def family_usage(pid: int) -> Usage | None:
    """The usage of process `pid` and its descendants; None once it is gone.

    A descendant that has exited counts in its parent's children times once reaped; the
    parent is read first, so one reaped between the two reads is missed once, never doubled.
    """
    try:
        process = psutil.Process(pid)
        own = process.cpu_times()
        cpu = own.user + own.system + own.children_user + own.children_system
        rss = process.memory_info().rss
        descendants = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for member in descendants:
        try:
            times = member.cpu_times()
            rss += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        cpu += times.user + times.system
    return Usage(cpu_s=cpu, rss_mb=rss / 2**20)


def overrun(budget: ReadBudget, used: Usage, wall_s: float) -> str | None:
    """Why a read that has used `used` (CPU since it started) over `wall_s` seconds must be
    stopped, naming the limit it passed; None while it is within all of them."""
    if budget.seconds and used.cpu_s > budget.seconds:
        return (
            f"reading took longer than {budget.seconds:g} s of CPU time, the per-document "
            "limit (SLUICE_PARSE_TIMEOUT_S); its worker was stopped"
        )
    if budget.seconds and wall_s > budget.wall_seconds:
        return (
            f"reading took longer than {budget.wall_seconds:g} s of wall time "
            f"({budget.wall_factor:g} × SLUICE_PARSE_TIMEOUT_S, the limit for a read that waits "
            f"instead of working) and used {used.cpu_s:.1f} s of CPU; its worker was stopped"
        )
    if budget.memory_mb and used.rss_mb > budget.memory_mb:
        return (
            f"reading used {used.rss_mb:,.0f} MB, over the per-document memory limit of "
            f"{budget.memory_mb:,} MB (SLUICE_PARSE_MEMORY_MB); its worker was stopped"
        )
    return None
