"""Tests of retry decisions, full-jitter backoff and the (thread-safe) retry budget."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.config import RetryPolicy
from ipfs_accelerate_py.errors import (
    ERROR_TYPES,
    RETRYABLE,
    ConfigError,
    ErrorClass,
    InvalidRequest,
    RateLimited,
    TransientError,
)
from ipfs_accelerate_py.retry import (
    RetryBudget,
    RetryDecision,
    backoff_delay,
    capped_retry_after,
    decide_retry,
)

def rng():
    return random.Random(42)


# --- backoff_delay --------------------------------------------------------------------


def test_backoff_without_jitter_is_the_cap():
    p = RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=5.0, jitter=False)
    assert [backoff_delay(p, a, rng()) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_huge_attempt_does_not_overflow():
    p = RetryPolicy(base_delay=1.0, multiplier=10.0, max_delay=7.0, jitter=False)
    assert backoff_delay(p, 10_000, rng()) == 7.0


@given(attempt=st.integers(1, 200), base=st.floats(0.001, 10), mult=st.floats(0.5, 4),
       cap=st.floats(0.01, 100), seed=st.integers(0, 2**32))
@settings(max_examples=300, deadline=None)
def test_full_jitter_within_bounds(attempt, base, mult, cap, seed):
    p = RetryPolicy(base_delay=base, multiplier=mult, max_delay=cap)
    try:
        bound = min(cap, base * mult ** (attempt - 1))
    except OverflowError:
        bound = cap
    d = backoff_delay(p, attempt, random.Random(seed))
    assert 0.0 <= d <= bound


def test_full_jitter_spreads():
    p = RetryPolicy(base_delay=1.0, multiplier=2.0, max_delay=100.0)
    r = random.Random(3)
    samples = [backoff_delay(p, 4, r) for _ in range(2000)]  # uniform(0, 8)
    assert 3.5 < sum(samples) / len(samples) < 4.5
    assert min(samples) < 0.5 and max(samples) > 7.5


# --- decide_retry ---------------------------------------------------------------------


def test_should_retry_false_wins_over_everything():
    d = decide_retry(RetryPolicy(), 1, TransientError("x", should_retry=False), 0.0, None, rng())
    assert d == RetryDecision(False, 0.0, "server said x-should-retry: false")


def test_max_attempts():
    p = RetryPolicy(max_attempts=3)
    assert decide_retry(p, 2, TransientError("x"), 0.0, None, rng()).retry
    d = decide_retry(p, 3, TransientError("x", should_retry=True), 0.0, None, rng())
    assert not d.retry and "3 attempts" in d.reason
    assert not decide_retry(RetryPolicy(max_attempts=1), 1, TransientError("x"), 0, None, rng()).retry


@pytest.mark.parametrize("cls", list(ErrorClass))
def test_only_retryable_classes(cls):
    err = ERROR_TYPES[cls]("boom")
    d = decide_retry(RetryPolicy(), 1, err, 0.0, None, rng())
    assert d.retry == (cls in RETRYABLE)
    if not d.retry:
        assert "not retryable" in d.reason


def test_should_retry_true_overrides_class():
    d = decide_retry(RetryPolicy(), 1, InvalidRequest("x", should_retry=True), 0.0, None, rng())
    assert d.retry


def test_retry_on_is_configurable():
    p = RetryPolicy(retry_on=["timeout"])
    assert not decide_retry(p, 1, TransientError("x"), 0, None, rng()).retry
    assert decide_retry(p, 1, ERROR_TYPES[ErrorClass.TIMEOUT]("x"), 0, None, rng()).retry


def test_delay_is_backoff():
    p = RetryPolicy(base_delay=1.0, multiplier=2.0, jitter=False)
    assert decide_retry(p, 3, TransientError("x"), 0, None, rng()).delay == 4.0
    pj = RetryPolicy(base_delay=1.0, multiplier=2.0)
    assert decide_retry(pj, 3, TransientError("x"), 0, None, rng()).delay == backoff_delay(pj, 3, rng())


def test_retry_after_is_a_floor_and_capped():
    p = RetryPolicy(base_delay=1.0, jitter=False, max_retry_after=10.0)
    d = decide_retry(p, 1, TransientError("x", retry_after=5.0), 0, None, rng())
    assert d.retry and d.delay == 5.0 and "retry-after" in d.reason
    d = decide_retry(p, 1, TransientError("x", retry_after=0.1), 0, None, rng())
    assert d.delay == 1.0  # backoff larger: keep it
    d = decide_retry(p, 1, TransientError("x", retry_after=500.0), 0, None, rng())
    assert d.delay == 10.0
    off = RetryPolicy(base_delay=1.0, jitter=False, honor_retry_after=False)
    assert decide_retry(off, 1, TransientError("x", retry_after=5.0), 0, None, rng()).delay == 1.0


def test_rate_limited_delay_is_zero_hint_goes_to_the_key():
    p = RetryPolicy(base_delay=1.0, jitter=False)
    for hint in (None, 0.5, 30.0):
        d = decide_retry(p, 2, RateLimited("x", retry_after=hint), 0, None, rng())
        assert d.retry and d.delay == 0.0


def test_deadline():
    p = RetryPolicy(base_delay=2.0, jitter=False)
    assert decide_retry(p, 1, TransientError("x"), 10.0, 12.5, rng()).retry
    d = decide_retry(p, 1, TransientError("x"), 10.0, 12.0, rng())
    assert not d.retry and "deadline" in d.reason
    d = decide_retry(p, 1, TransientError("x", retry_after=5.0), 10.0, 14.0, rng())
    assert not d.retry
    d = decide_retry(p, 1, RateLimited("x"), 10.0, 10.0, rng())  # already at the deadline
    assert not d.retry
    assert decide_retry(p, 1, RateLimited("x"), 10.0, 10.5, rng()).retry


@given(attempt=st.integers(1, 10), cls=st.sampled_from(list(ErrorClass)),
       should=st.sampled_from([None, True, False]),
       retry_after=st.one_of(st.none(), st.floats(0, 1000)),
       now=st.floats(0, 1e6), left=st.one_of(st.none(), st.floats(0, 100)),
       seed=st.integers(0, 1000))
@settings(max_examples=300, deadline=None)
def test_decision_properties(attempt, cls, should, retry_after, now, left, seed):
    p = RetryPolicy()
    err = ERROR_TYPES[cls]("x", should_retry=should, retry_after=retry_after)
    deadline = None if left is None else now + left
    d = decide_retry(p, attempt, err, now, deadline, random.Random(seed))
    assert d.reason
    if d.retry:
        assert should is not False and attempt < p.max_attempts
        assert cls in p.retry_on or should is True
        assert 0.0 <= d.delay <= max(p.max_delay, p.max_retry_after)
        assert deadline is None or now + d.delay < deadline
        if cls is ErrorClass.RATE_LIMITED:
            assert d.delay == 0.0
        elif retry_after is not None:
            assert d.delay >= min(retry_after, p.max_retry_after)


# --- RetryBudget ----------------------------------------------------------------------


def test_budget_floor_and_ratio():
    b = RetryBudget(ratio=0.5, min_per_second=0.2, window=10.0, now=0.0)  # floor 2
    assert [b.try_spend(0.0) for _ in range(3)] == [True, True, False]
    for _ in range(10):
        b.record_request(0.0)
    assert sum(b.try_spend(0.0) for _ in range(10)) == 5  # 0.5*10 + 2 = 7 in all
    assert b.snapshot(0.0) == {"requests": 10, "retries": 7}


def test_budget_window_ages_out():
    b = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, now=0.0)  # 1 per window
    assert b.try_spend(0.0)
    assert not b.try_spend(5.0)
    assert not b.try_spend(9.9)
    assert b.try_spend(10.0)  # the bucket of t=0 left the window
    for _ in range(100):
        b.record_request(11.0)
    assert b.snapshot(11.0)["requests"] == 100
    assert b.snapshot(20.5)["requests"] == 100
    assert b.snapshot(21.0)["requests"] == 0
    assert b.snapshot(1e9)["requests"] == 0  # long idle: O(1) catch-up


def test_budget_zero_allows_nothing():
    b = RetryBudget(ratio=0.0, min_per_second=0.0, window=1.0, now=0.0)
    b.record_request(0.0)
    assert not b.try_spend(0.0)


def test_budget_validation():
    for kw in ({"ratio": -1}, {"min_per_second": -0.1}, {"window": 0}):
        args = {"ratio": 0.1, "min_per_second": 1.0, "window": 10.0, "now": 0.0} | kw
        with pytest.raises(ConfigError):
            RetryBudget(**args)


@given(ops=st.lists(st.tuples(st.booleans(), st.floats(0, 3)), max_size=200),
       ratio=st.floats(0, 2), floor=st.floats(0, 2))
@settings(max_examples=200, deadline=None)
def test_budget_never_exceeds_its_allowance(ops, ratio, floor):
    """At each granted retry: retries in the last (window - bucket width) seconds, all of
    which the bucketed window still sees, stay within ratio * requests in the last
    window + the floor (+1: the check is made before booking the retry)."""
    window = 10.0
    b = RetryBudget(ratio=ratio, min_per_second=floor, window=window, now=0.0)
    now = 0.0
    events = []  # (time, is_retry)
    for is_retry, dt in ops:
        now += dt
        if is_retry:
            if b.try_spend(now):
                events.append((now, True))
        else:
            b.record_request(now)
            events.append((now, False))
    short = window - window / RetryBudget.BUCKETS
    for t, is_retry in events:
        if not is_retry:
            continue
        retries = sum(1 for (u, r) in events if r and t - short < u <= t)
        requests = sum(1 for (u, r) in events if not r and t - window < u <= t)
        assert retries <= ratio * requests + floor * window + 1


def test_budget_thread_stress():
    b = RetryBudget(ratio=0.25, min_per_second=0.0, window=100.0, now=0.0)
    granted = []
    lock = threading.Lock()

    def worker():
        mine = 0
        for _ in range(2000):
            b.record_request(1.0)
            mine += b.try_spend(1.0)
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(granted)
    assert b.snapshot(1.0) == {"requests": 32_000, "retries": total}
    assert total <= 0.25 * 32_000
    assert total >= 0.25 * 32_000 - 16  # each grant happens once its requests are in


# --- capped_retry_after (the retry's delay and the key's cooldown) ----------------------
@pytest.mark.parametrize("value,expected", [
    (None, None), (float("nan"), None), ("soon", None), (-5.0, 0.0), (2.5, 2.5),
    (999999.0, 5.0), (float("inf"), 5.0), (1e308, 5.0),
])
def test_capped_retry_after(value, expected):
    assert capped_retry_after(RetryPolicy(max_retry_after=5.0), value) == expected


def test_capped_retry_after_is_none_when_hints_are_ignored():
    assert capped_retry_after(RetryPolicy(honor_retry_after=False), 3.0) is None


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_capped_retry_after_stays_within_the_cap(value):
    got = capped_retry_after(RetryPolicy(max_retry_after=7.0), value)
    assert got is None or 0.0 <= got <= 7.0


def test_huge_retry_after_delay_is_capped_in_the_decision():
    err = TransientError("busy", retry_after=float("inf"))
    d = decide_retry(RetryPolicy(max_retry_after=2.0, jitter=False, base_delay=0.1), 1, err,
                     now=0.0, deadline=100.0, rng=rng())
    assert d.retry and d.delay == 2.0
