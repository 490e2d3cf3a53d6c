"""Tests of the in-memory state store: identity per name, thread-safe counters."""

from __future__ import annotations

import inspect
import threading

import pytest

from ipfs_accelerate_py.breaker import CircuitBreaker
from ipfs_accelerate_py.config import BreakerPolicy
from ipfs_accelerate_py.limiter import KeyLimiter
from ipfs_accelerate_py.state import (
    Breaker,
    Counter,
    InMemoryStateStore,
    Limiter,
    LocalCounter,
    StateStore,
)


def test_is_a_state_store():
    s = InMemoryStateStore()
    assert isinstance(s, StateStore)
    with pytest.raises(TypeError):
        StateStore()  # abstract


def test_limiter_same_scope_same_object():
    s = InMemoryStateStore()
    a = s.limiter("openai:key-1", 60, 1000, None, 0.0)
    assert isinstance(a, KeyLimiter)
    assert s.limiter("openai:key-1", 999, None, 5, 1.0) is a  # first creation wins
    assert a.requests_per_minute == 60
    assert s.limiter("openai:key-2", None, None, None, 0.0) is not a


def test_breaker_same_endpoint_same_object():
    s = InMemoryStateStore()
    log = []
    b = s.breaker("https://api/x", BreakerPolicy(minimum_calls=1), lambda *a: log.append(a))
    assert isinstance(b, CircuitBreaker)
    assert s.breaker("https://api/x", BreakerPolicy()) is b
    assert s.breaker("https://api/y", BreakerPolicy()) is not b
    b.record_failure(0.0)
    assert log and log[0][0] == "https://api/x"


def test_counter_basics():
    s = InMemoryStateStore()
    c = s.counter("inflight:k1")
    assert isinstance(c, Counter)
    assert s.counter("inflight:k1") is c
    assert c.value() == 0
    assert c.incr() == 1 and c.incr(5) == 6 and c.decr() == 5 and c.decr(5) == 0
    s.counter("other").incr(3)
    assert s.counters() == {"inflight:k1": 0, "other": 3}
    assert "LocalCounter" in repr(c)
    s.close()


def test_counter_thread_stress_exact():
    s = InMemoryStateStore()
    start = threading.Barrier(16)

    def worker(i):
        start.wait()
        # each thread looks the counters up itself: creation races must yield one object
        up = s.counter("up")
        both = s.counter("both")
        for _ in range(10_000):
            up.incr()
            both.incr(2)
            both.decr()
        s.counter(f"mine-{i % 4}").incr(10_000)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.counter("up").value() == 160_000
    assert s.counter("both").value() == 160_000
    assert [s.counter(f"mine-{i}").value() for i in range(4)] == [40_000] * 4


def test_concurrent_creation_yields_one_object():
    s = InMemoryStateStore()
    start = threading.Barrier(32)
    seen: list[tuple] = []
    lock = threading.Lock()

    def worker():
        start.wait()
        got = (s.limiter("k", 60, None, None, 0.0), s.breaker("e", BreakerPolicy()),
               s.counter("c"))
        with lock:
            seen.append(got)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        assert len({id(g[i]) for g in seen}) == 1


def test_local_counter_standalone():
    c = LocalCounter(7)
    assert c.value() == 7 and c.decr(10) == -3


# ---------------------------------------------------------------- typed protocols
def protocol_mismatches(protocol, cls):
    """Members of ``protocol`` that ``cls`` lacks or whose parameters differ."""
    out = []
    for name, member in vars(protocol).items():
        if name.startswith("_") or not callable(member):
            continue
        impl = getattr(cls, name, None)
        if impl is None or impl is member:
            out.append(f"{name}: missing")
            continue
        want = list(inspect.signature(member).parameters)
        got = list(inspect.signature(impl).parameters)
        if want != got:
            out.append(f"{name}: {got} != {want}")
    return out


def test_the_memory_limiter_and_breaker_follow_the_store_protocols():
    assert protocol_mismatches(Limiter, KeyLimiter) == []
    assert protocol_mismatches(Breaker, CircuitBreaker) == []
    store = InMemoryStateStore()
    assert isinstance(store.limiter("b/k", 60, None, None, 0.0), Limiter)
    assert isinstance(store.breaker("b@x", BreakerPolicy()), Breaker)
    assert not isinstance(object(), Limiter)
