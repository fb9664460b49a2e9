"""The verdict on a read's usage: CPU time against the limit, time passed against the backstop,
memory against its limit, each named in the reason; and usage measured with what a worker
started (a Tesseract process), which a parser library can hide its work in."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from pipelines.read_budget import ReadBudget, Usage, family_usage, overrun

BUDGET = ReadBudget(seconds=300, memory_mb=2048)


def test_a_read_within_every_limit_goes_on() -> None:
    assert overrun(BUDGET, Usage(cpu_s=299, rss_mb=2000), wall_s=2999) is None


def test_a_read_slowed_far_past_its_cpu_limit_in_wall_time_goes_on() -> None:
    assert overrun(BUDGET, Usage(cpu_s=30, rss_mb=10), wall_s=2400) is None


def test_cpu_time_past_the_limit_stops_the_read_whatever_the_time_passed() -> None:
    reason = overrun(BUDGET, Usage(cpu_s=301, rss_mb=10), wall_s=302)
    assert reason == (
        "reading took longer than 300 s of CPU time, the per-document limit "
        "(SLUICE_PARSE_TIMEOUT_S); its worker was stopped"
    )


def test_time_passed_past_the_backstop_stops_a_read_that_used_little_cpu() -> None:
    reason = overrun(BUDGET, Usage(cpu_s=0.25, rss_mb=10), wall_s=3001)
    assert reason is not None
    assert reason.startswith("reading took longer than 3000 s of wall time (10 × ")
    assert "used 0.2 s of CPU" in reason


def test_memory_past_the_limit_stops_the_read() -> None:
    reason = overrun(BUDGET, Usage(cpu_s=1, rss_mb=2049), wall_s=1)
    assert reason is not None and "2,049 MB, over the per-document memory limit" in reason


def test_zero_turns_a_limit_off() -> None:
    huge = Usage(cpu_s=1e9, rss_mb=1e9)
    assert overrun(ReadBudget(seconds=0, memory_mb=0), huge, wall_s=1e9) is None
    assert overrun(ReadBudget(seconds=0, memory_mb=1), huge, wall_s=1e9) is not None
    assert overrun(ReadBudget(seconds=1, memory_mb=0), huge, wall_s=0) is not None


_BURNS_IN_A_CHILD = """
import subprocess, sys, time
burn = "import time\\nuntil = time.process_time() + 1.0\\nwhile time.process_time() < until: pass"
subprocess.run([sys.executable, "-c", burn])  # one that has exited, reaped
alive = subprocess.Popen([sys.executable, "-c", burn + "\\ntime.sleep(60)"])
print("burnt", flush=True)
time.sleep(60)
"""


def test_usage_counts_the_cpu_of_what_a_worker_started_running_or_exited() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _BURNS_IN_A_CHILD], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "burnt\n"
        deadline = time.monotonic() + 60
        while (usage := family_usage(worker.pid)) and usage.cpu_s < 1.9:
            assert time.monotonic() < deadline, f"only {usage.cpu_s:.2f} s of CPU counted"
            time.sleep(0.1)
        assert usage is not None and usage.rss_mb > 0
    finally:
        for child in psutil.Process(worker.pid).children(recursive=True):
            child.kill()
        worker.kill()
        worker.wait()
    assert family_usage(worker.pid) is None
