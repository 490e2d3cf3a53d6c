"""The Lua limiter against a real redis-server: rate bound, sharing, learning, 429s."""

from __future__ import annotations

import threading
import time

import pytest

from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.limiter import KeyLimiter
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo
from ipfs_accelerate_redis import RedisStateStore


def _store(url: str, ns: str, **kw) -> RedisStateStore:
    kw.setdefault("socket_timeout", 5.0)  # a loaded CI machine must not look like an outage
    return RedisStateStore(url, namespace=ns, **kw)


def _max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - window + 1e-12:
            j += 1
        best = max(best, i - j + 1)
    return best


def _hammer(limiter, until: float, out: list[float]) -> None:
    """Acquire as fast as allowed; record the server time of each admission."""
    while time.monotonic() < until:
        now = time.monotonic()
        w = limiter.wait_time(0, now)
        if w > 0:
            time.sleep(min(w, 0.01))
            continue
        if limiter.acquire(0, time.monotonic()):
            out.append(limiter._mirror.server_now)


def test_never_admits_more_than_the_rate_in_any_window(redis_url: str, namespace: str) -> None:
    store = _store(redis_url, namespace)
    rpm, burst = 1200.0, 3.0  # 20/s
    lim = store.limiter("echo/k1", rpm, None, burst, time.monotonic())
    stamps: list[float] = []
    _hammer(lim, time.monotonic() + 1.5, stamps)
    rate = rpm / 60
    for window in (0.05, 0.1, 0.25, 0.5, 1.0):
        assert _max_in_window(stamps, window) <= burst + rate * window + 1e-9
    assert len(stamps) >= 0.9 * (burst + rate * 1.5) - 2  # it does admit up to the rate
    store.close()


def test_four_stores_in_threads_share_one_bucket(redis_url: str, namespace: str) -> None:
    """Four store instances (four connections, as four processes would have) on one key."""
    rpm, burst = 1800.0, 2.0  # 30/s
    stores = [_store(redis_url, namespace) for _ in range(4)]
    limiters = [s.limiter("echo/shared", rpm, None, burst, time.monotonic()) for s in stores]
    outs: list[list[float]] = [[] for _ in stores]
    until = time.monotonic() + 2.0
    threads = [threading.Thread(target=_hammer, args=(lim, until, out))
               for lim, out in zip(limiters, outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = [s for out in outs for s in out]
    rate = rpm / 60
    for window in (0.1, 0.5, 1.0, 2.0):
        assert _max_in_window(stamps, window) <= burst + rate * window + 1e-9
    assert all(out for out in outs)  # every "process" got some
    assert len(stamps) >= 0.9 * rate * 2.0
    for s in stores:
        s.close()


def test_token_bucket_and_reconcile(redis_url: str, namespace: str) -> None:
    store = _store(redis_url, namespace)
    now = time.monotonic()
    lim = store.limiter("b/k", None, 600.0, None, now)  # 10 tokens/s, capacity 600
    assert lim.tokens_per_minute == 600.0 and lim.requests_per_minute is None
    assert lim.acquire(550, now)
    assert lim.wait_time(100, time.monotonic()) > 2.0  # ~50 left, 100 needed at 10/s
    assert not lim.acquire(100, time.monotonic())
    lim.reconcile(550, 50, time.monotonic())  # the estimate was 500 too high: refunded
    assert lim.wait_time(100, time.monotonic()) == 0.0
    snap = lim.snapshot(time.monotonic())
    assert 550 <= snap["token_level"] <= 600 and snap["shared"] is True
    lim.reconcile(0, 1000, time.monotonic())  # an under-estimate becomes debt
    assert lim.snapshot(time.monotonic())["token_level"] < 0
    store.close()


def test_release_unsent_gives_the_request_back(redis_url: str, namespace: str) -> None:
    store = _store(redis_url, namespace)
    lim = store.limiter("b/k", 60.0, None, 1.0, time.monotonic())  # 1/s, capacity 1
    assert lim.acquire(0, time.monotonic())
    assert lim.wait_time(0, time.monotonic()) > 0
    lim.release_unsent(0, time.monotonic())
    assert lim.wait_time(0, time.monotonic()) == 0.0
    store.close()


def test_learned_limits_and_cooldowns_are_shared(redis_url: str, namespace: str) -> None:
    a, b = _store(redis_url, namespace), _store(redis_url, namespace)
    now = time.monotonic()
    la = a.limiter("openai/k1", None, None, None, now)
    lb = b.limiter("openai/k1", None, None, None, now)
    assert la.wait_time(0, now) == 0.0 and la.headroom(now) == 1.0 and not la.learned
    # Read as the core reads it (6 left to refill in 600 s, 1000 tokens in 10 s).
    info = RateLimitInfo(limit_requests=6, remaining_requests=0, reset_requests=600.0,
                         limit_tokens=6000, remaining_tokens=5000, reset_tokens=10.0)
    core = KeyLimiter(0.0)
    core.observe(info, 0.0)
    la.observe(info, time.monotonic())
    snap = lb.snapshot(time.monotonic() + 1.0)  # older than refresh: read again
    assert snap["requests_per_minute"] == pytest.approx(core.requests_per_minute)
    assert snap["tokens_per_minute"] == pytest.approx(core.tokens_per_minute)
    assert snap["learned"] is True
    assert lb.wait_time(0, time.monotonic() + 1.0) > 0  # the cooldown reached process b
    b.close()
    a.close()


def test_429_cooldown_backs_off_and_success_resets(redis_url: str, namespace: str) -> None:
    a, b = _store(redis_url, namespace), _store(redis_url, namespace)
    la = a.limiter("x/k", 6000.0, None, None, time.monotonic())
    lb = b.limiter("x/k", 6000.0, None, None, time.monotonic())
    la.observe_429(None, time.monotonic())  # no hint: 1 s
    lb.observe_429(None, time.monotonic())  # second consecutive, from elsewhere: 2 s
    assert 1.0 < lb.cooldown(time.monotonic()) <= 2.0 + 1e-3  # 2 s: more than the first's 1 s
    assert lb.headroom(time.monotonic()) == 0.0
    assert not la.acquire(0, time.monotonic())
    lb.observe_success(time.monotonic())
    la.observe_429(0.2, time.monotonic())  # an explicit retry-after wins
    assert la._mirror.n429 == 1
    a.close()
    b.close()


def test_invalid_limits_are_rejected_like_the_core(redis_url: str, namespace: str) -> None:
    store = _store(redis_url, namespace)
    with pytest.raises(ConfigError):
        store.limiter("x/k", -1.0, None, None, time.monotonic())
    store.close()


def test_counters_are_shared(redis_url: str, namespace: str) -> None:
    a, b = _store(redis_url, namespace), _store(redis_url, namespace)
    assert a.counter("in_flight/echo/k1").incr() == 1
    assert b.counter("in_flight/echo/k1").incr(2) == 3
    assert a.counter("in_flight/echo/k1").decr() == 2
    assert b.counter("in_flight/echo/k1").value() == 2
    assert a.counters() == {"in_flight/echo/k1": 2}
    a.close()
    b.close()


def test_learned_request_capacity_is_the_peak_remaining_plus_one(redis_url: str,
                                                                 namespace: str) -> None:
    """A server enforcing 600/min as 10/s with a burst of 3 never reports more than 2
    left: the learned bucket holds 3, not 600 (the core's rule: its learner runs in each
    process and the shared bucket takes what it learned)."""
    a, b = _store(redis_url, namespace), _store(redis_url, namespace)
    la = a.limiter("groq/k", None, None, None, time.monotonic())
    la.observe(RateLimitInfo(limit_requests=600, remaining_requests=1), time.monotonic())
    la.observe(RateLimitInfo(limit_requests=600, remaining_requests=2), time.monotonic())
    la.observe(RateLimitInfo(limit_requests=600, remaining_requests=0), time.monotonic())
    snap = b.limiter("groq/k", None, None, None, 0).snapshot(time.monotonic() + 10)
    assert snap["requests_per_minute"] == pytest.approx(600.0)
    assert snap["request_level"] == pytest.approx(3.0)  # capacity: peak 2 (from b) + 1
    a.close()
    b.close()


def test_remaining_read_as_of_when_the_request_was_sent(redis_url: str,
                                                        namespace: str) -> None:
    """Issue 12: a ``remaining`` counted one latency ago, rounded down, no longer throws
    away the refill since; read as counted now (no ``sent_at``), it still lowers."""
    store = _store(redis_url, namespace, refresh=0.0)
    now = time.monotonic()
    lim = store.limiter("b/k", 600.0, None, 5.0, now)  # 10/s, capacity 5
    info = RateLimitInfo(remaining_requests=1)
    lim.observe(info, now, sent_at=now - 0.2)  # at most 1 + 1 + 2 refilled = 4 proven
    assert lim.snapshot(now)["request_level"] >= 4.0 - 1e-6
    lim.observe(info, time.monotonic())
    assert lim.snapshot(time.monotonic())["request_level"] <= 1.5
    store.close()


def _header_sequence(style: str, whole_seconds: bool, rps: float = 10.0, burst: float = 3.0):
    """What a server with an exact bucket (``rps``, ``burst``) answers a client sending
    every 80 ms: (info, now, sent_at) per response, 429s included."""
    import math

    from ipfs_accelerate_sim.limits import KeyQuota

    server = KeyQuota(rps, burst, 60_000.0, 0.0, style)
    out = []
    for i in range(150):
        sent = i * 0.08 + (0.03 if i % 7 == 0 else 0.0)
        ok, info = server.admit(20.0, sent + 0.02)
        now = sent + 0.05
        if whole_seconds:
            info = RateLimitInfo(
                limit_requests=info.limit_requests, remaining_requests=info.remaining_requests,
                reset_requests=max(0.0, math.floor(sent + 0.02 + info.reset_requests) - now),
                limit_tokens=info.limit_tokens, remaining_tokens=info.remaining_tokens,
                reset_tokens=max(0.0, math.floor(sent + 0.02 + info.reset_tokens) - now),
                retry_after=None if ok else float(max(1, math.ceil(info.retry_after))),
                reset_resolution=1.0)
        else:
            info = RateLimitInfo(
                limit_requests=info.limit_requests, remaining_requests=info.remaining_requests,
                reset_requests=round(info.reset_requests, 3), limit_tokens=info.limit_tokens,
                remaining_tokens=info.remaining_tokens, reset_tokens=round(info.reset_tokens, 3),
                retry_after=info.retry_after)
        out.append((info, now, sent, ok))
    return out


@pytest.mark.parametrize("style,whole_seconds", [("per_minute", False), ("bucket", False),
                                                 ("daily", False), ("per_minute", True),
                                                 ("bucket", True), ("window_10s", True)])
def test_redis_learns_what_the_core_learns(redis_url: str, namespace: str, style: str,
                                           whole_seconds: bool) -> None:
    """The same header sequence (OpenAI-style ms resets, Anthropic-style whole-second
    instants; 429s among them) teaches the Redis limiter and an in-process one the same
    request and token rates and capacities, with the same sources; and the shared bucket
    paces by them."""
    store = _store(redis_url, namespace, refresh=0.0)
    shared = store.limiter("anthropic/k1", None, None, None, 0.0)
    core = KeyLimiter(0.0)
    for info, now, sent, ok in _header_sequence(style, whole_seconds):
        for lim in (core, shared):
            lim.observe(info, now, sent_at=sent)
            if ok:
                lim.observe_success(now)
            else:
                lim.observe_429(info.retry_after, now)
    mine, theirs = core.snapshot(12.0), shared.snapshot(12.0)
    for dim in ("requests", "tokens"):
        for field in ("rate_per_second", "capacity", "rate_source", "capacity_source"):
            assert theirs[dim][field] == pytest.approx(mine[dim][field]) if isinstance(
                mine[dim][field], float) else theirs[dim][field] == mine[dim][field], (dim, field)
    assert mine["requests"]["rate_per_second"] is not None
    m = shared._mirror
    rr, rc, tr, tc = core.binding()
    assert (m.rr, m.rc, m.tr, m.tc) == (pytest.approx(rr), pytest.approx(rc),
                                        pytest.approx(tr), pytest.approx(tc))
    assert theirs["requests_per_minute"] == pytest.approx(core.requests_per_minute)
    store.close()
