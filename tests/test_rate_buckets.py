"""Per-key rate limits shared through the data dir: GCRA's promise for any arrival times (never
more than the burst plus the rate over any stretch of time, and a request spaced at the rate
always admitted), and processes sharing one file admitting a key's rate once between them."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval_api.rate_buckets import SqliteRateBuckets, decide
from tests.conftest import examples

ROOT = Path(__file__).resolve().parents[1]


@settings(max_examples=examples(400, 60), deadline=None)
@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_the_burst_plus_the_rate_over_any_stretch(
    rate: float, burst: int, gaps: list[float]
) -> None:
    now, tat, admitted = 1_000.0, 0.0, []
    for gap in gaps:
        now += gap
        decision, tat = decide(tat, now, rate, burst)
        if decision.admitted:
            admitted.append(now)
            assert 0 <= decision.remaining < burst
        else:
            assert decision.retry_after_s > 0
            # Asked again once the wait is over, the same request is admitted.
            assert decide(tat, now + decision.retry_after_s, rate, burst)[0].admitted
    for i, start in enumerate(admitted):
        within = [t for t in admitted[i:] if t - start <= 10]
        stretch = within[-1] - start
        assert len(within) <= burst + math.floor(stretch * rate + 1e-6), (start, within)


@settings(max_examples=examples(200, 40), deadline=None)
@given(rate=st.floats(0.1, 100), burst=st.integers(1, 20), n=st.integers(1, 50))
def test_requests_at_the_rate_are_all_admitted_and_a_full_bucket_admits_the_burst(
    rate: float, burst: int, n: int
) -> None:
    tat, now = 0.0, 50.0
    for _ in range(n):
        decision, tat = decide(tat, now, rate, burst)
        assert decision.admitted
        now += 1 / rate
    fresh = 0.0
    at_once = 0
    for _ in range(burst + 3):
        decision, fresh = decide(fresh, 99.0, rate, burst)
        at_once += decision.admitted
    assert at_once == burst


TAKER = """
import sys, time
from pathlib import Path
from retrieval_api.rate_buckets import SqliteRateBuckets
buckets = SqliteRateBuckets(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
admitted = 0
end = time.time() + float(sys.argv[2])
while time.time() < end:
    admitted += buckets.take("key", rate_per_s=20, burst=5).admitted
    time.sleep(0.002)
print(admitted)
"""


def test_processes_sharing_the_file_admit_the_rate_once_between_them(tmp_path: Path) -> None:
    seconds = 3.0
    takers = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, str(tmp_path / "rate.sqlite"), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    for taker in takers:
        assert taker.stdout is not None and taker.stdout.readline().strip() == "ready"
    for taker in takers:
        assert taker.stdin is not None
        taker.stdin.write("go\n")
        taker.stdin.flush()
    counts = [int(taker.communicate(timeout=60)[0]) for taker in takers]
    # 20/s for ~3 s plus a burst of 5, between the two: ~65, where separate buckets give ~130.
    assert all(c > 5 for c in counts), counts
    assert 50 <= sum(counts) <= 5 + 20 * (seconds + 0.5), counts


def test_a_bucket_outlives_the_process_that_filled_it(tmp_path: Path) -> None:
    path = tmp_path / "rate.sqlite"
    first = SqliteRateBuckets(path)
    assert [first.take("k", 1, 2).admitted for _ in range(3)] == [True, True, False]
    first.close()
    second = SqliteRateBuckets(path)  # an API restarted, or another replica
    refused = second.take("k", 1, 2)
    assert not refused.admitted and 0 < refused.retry_after_s <= 1
    assert second.take("other", 1, 2).admitted
    assert second.take("k", 1, 2, now=time.time() + 2).admitted
