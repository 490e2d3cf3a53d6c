"""The shared circuit breaker against a real redis-server."""

from __future__ import annotations

import time

from ipfs_accelerate_py.config import BreakerPolicy
from ipfs_accelerate_redis import RedisStateStore

POLICY = BreakerPolicy(window_size=4, minimum_calls=2, failure_rate_threshold=0.5,
                       open_interval=0.3, interval_multiplier=200.0, max_open_interval=60.0,
                       half_open_trials=1)


#: Opens for a long time: for tests that must see OPEN, however slow the machine.
LONG = BreakerPolicy(window_size=4, minimum_calls=2, failure_rate_threshold=0.5,
                     open_interval=60.0)


def _pair(url: str, ns: str, policy: BreakerPolicy = POLICY):
    seen: list[tuple[str, str, str]] = []
    a = RedisStateStore(url, namespace=ns, refresh=0.0, socket_timeout=5.0)
    b = RedisStateStore(url, namespace=ns, refresh=0.0, socket_timeout=5.0)
    ba = a.breaker("echo@http://x", policy, lambda e, o, n, t: seen.append(("a", o, n)))
    bb = b.breaker("echo@http://x", policy, lambda e, o, n, t: seen.append(("b", o, n)))
    return a, b, ba, bb, seen


def test_failures_in_one_process_open_it_for_all(redis_url: str, namespace: str) -> None:
    a, b, ba, bb, seen = _pair(redis_url, namespace, LONG)
    now = time.monotonic()
    assert ba.state(now) == "closed" and bb.can_dispatch(now)
    e1 = ba.on_dispatch(now)
    e2 = bb.on_dispatch(now)
    ba.record_failure(time.monotonic(), e1)
    bb.record_failure(time.monotonic(), e2)  # 2 of 2 failed, across two processes: open
    assert ("b", "closed", "open") in seen
    assert not ba.can_dispatch(time.monotonic())  # a learns it on its next read
    assert ("a", "closed", "open") in seen
    assert 0 < ba.time_until_dispatch(time.monotonic()) <= 60.0
    assert ba.snapshot(time.monotonic())["trips"] == 1
    a.close()
    b.close()


def test_half_open_trial_slots_are_shared_and_close_it(redis_url: str, namespace: str) -> None:
    a, b, ba, bb, seen = _pair(redis_url, namespace)
    for _ in range(2):
        ba.record_failure(time.monotonic(), ba.on_dispatch(time.monotonic()))
    time.sleep(0.35)
    now = time.monotonic()
    assert ba.state(now) == "half_open"
    assert ba.can_dispatch(now)
    trial = ba.on_dispatch(now)  # takes the only trial slot
    assert not bb.can_dispatch(time.monotonic())  # ... for every process
    ba.record_success(time.monotonic(), trial)
    assert bb.state(time.monotonic()) == "closed"
    assert ("a", "half_open", "closed") in seen and ("b", "half_open", "closed") in seen
    a.close()
    b.close()


def test_stale_outcomes_are_ignored(redis_url: str, namespace: str) -> None:
    a, b, ba, bb, seen = _pair(redis_url, namespace)
    old = bb.on_dispatch(time.monotonic())  # dispatched while closed ...
    for _ in range(2):
        ba.record_failure(time.monotonic(), ba.on_dispatch(time.monotonic()))
    time.sleep(0.35)
    assert ba.state(time.monotonic()) == "half_open"
    trial = ba.on_dispatch(time.monotonic())
    bb.record_success(time.monotonic(), old)  # ... reports in half-open: ignored
    assert ba.state(time.monotonic()) == "half_open"
    ba.record_failure(time.monotonic(), trial)  # the trial fails: open again, longer
    snap = bb.snapshot(time.monotonic())
    assert snap["state"] == "open" and snap["trips"] == 2 and snap["open_for"] > 1.0
    a.close()
    b.close()


def test_neutral_outcomes_do_not_trip(redis_url: str, namespace: str) -> None:
    a, b, ba, bb, seen = _pair(redis_url, namespace)
    for _ in range(6):
        ba.record_neutral(time.monotonic(), ba.on_dispatch(time.monotonic()))
    ba.record_failure(time.monotonic(), ba.on_dispatch(time.monotonic()))
    assert bb.state(time.monotonic()) == "closed"
    assert seen == []
    a.close()
    b.close()


def test_deferred_successes_count_before_a_later_failure(redis_url: str, namespace: str) -> None:
    policy = BreakerPolicy(window_size=4, minimum_calls=2, failure_rate_threshold=0.6,
                           open_interval=5.0)
    store = RedisStateStore(redis_url, namespace=namespace, socket_timeout=5.0)
    brk = store.breaker("echo@y", policy, None)
    for _ in range(2):
        brk.record_success(time.monotonic(), brk.on_dispatch(time.monotonic()))
    for _ in range(2):  # 2 failures of 4 calls: 0.5 < 0.6 (without the successes: 2 of 2)
        brk.record_failure(time.monotonic(), brk.on_dispatch(time.monotonic()))
    snap = brk.snapshot(time.monotonic())
    assert snap["state"] == "closed" and snap["calls_in_window"] == 4
    assert snap["failure_rate"] == 0.5
    store.close()
