"""GCRA's promise for any arrival times: never more than the burst plus the rate over any stretch
of time, and a request spaced at the rate always admitted. That processes sharing the buckets
admit a key's rate once between them is the state contract's (tests/state_contract.py)."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval_api.rate_buckets import decide
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
