"""Retries over real HTTP: Retry-After, backoff, x-should-retry, budgets, key rotation."""

from __future__ import annotations

import queue
import time

import pytest

from ipfs_accelerate_py import (
    ApiKey,
    BackendConfig,
    BreakerPolicy,
    Client,
    ClientConfig,
    RetryPolicy,
)
from ipfs_accelerate_py.errors import AuthError, InvalidRequest, RateLimited, TransientError
from ipfs_accelerate_py import hookimpl
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import ManualClock


def make(pm, srv, keys=("test-key-1",), retry=None, clock=time.monotonic, **cfg):
    retry = retry or RetryPolicy(base_delay=0.01, max_delay=0.05)
    return Client([BackendConfig("echo", keys=list(keys), base_url=srv.url)],
                  ClientConfig(retry=retry, **cfg), plugin_manager=pm, seed=3, clock=clock)


class Retries:
    """Hands the test each retry as the pipeline schedules it."""

    def __init__(self):
        self.events = queue.Queue()

    @hookimpl
    def accelerate_on_retried(self, event):
        self.events.put(event)

    def next(self):
        return self.events.get(timeout=10)


def stamped(clock, srv, resp=None):
    """A scripted answer that notes the pipeline clock's time of the call."""
    times = []

    def answer(req):
        times.append(clock())
        return resp if resp is not None else srv.protocol(req)
    return answer, times


def err(status, headers=None, message="boom"):
    return ServerResponse.json({"error": {"message": message}}, status, headers=headers or {})


def wait_out(pm, srv, headers, steps):
    """Fail once with ``headers``, then advance the client's clock by ``steps``; the
    pipeline clock's times of the two calls."""
    clock, retries = ManualClock(), Retries()
    pm.add_plugin(retries, name="retries")
    first, times = stamped(clock, srv, err(429 if "retry-after-ms" in headers else 503, headers))
    second, times2 = stamped(clock, srv)
    srv.script(first, second)
    with make(pm, srv, clock=clock) as c:
        f = c.submit("echo", "echo", {"n": 1})
        retries.next()
        for step in steps:
            clock.advance(step)
        assert f.result(10).attempts == 2
    return times[0], times2[0]


def test_retry_after_seconds_is_honoured_on_the_key(pm, echo_server):
    t0, t1 = wait_out(pm, echo_server, {"retry-after": "1"}, [0.5, 0.4, 0.2])
    assert t1 - t0 >= 1.0


def test_retry_after_ms_wins_over_retry_after(pm, echo_server):
    t0, t1 = wait_out(pm, echo_server, {"retry-after-ms": "150", "retry-after": "30"}, [0.1, 0.1])
    assert 0.15 <= t1 - t0 <= 0.2 + 1e-9


def test_retry_after_http_date(pm, echo_server):
    from email.utils import formatdate

    # The date has whole-second resolution: 2 s ahead means a wait of 1 to 2 s.
    t0, t1 = wait_out(pm, echo_server, {"retry-after": formatdate(time.time() + 2, usegmt=True)},
                      [0.5, 0.5, 0.5, 0.5, 0.5])
    assert 1.0 <= t1 - t0 <= 2.5


def test_x_should_retry_false_stops_a_retryable_error(pm, echo_server):
    echo_server.script(err(503, {"x-should-retry": "false"}))
    with make(pm, echo_server) as c:
        with pytest.raises(TransientError):
            c.call("echo", "echo", {"n": 1})
    assert len(echo_server.requests) == 1


def test_x_should_retry_true_retries_a_client_error(pm, echo_server):
    echo_server.script(err(409, {"x-should-retry": "true"}))
    with make(pm, echo_server) as c:
        assert c.call("echo", "echo", {"n": 1}).attempts == 2


def test_client_errors_are_not_retried(pm, echo_server):
    echo_server.script(err(400, message="bad field"))
    with make(pm, echo_server) as c:
        with pytest.raises(InvalidRequest) as info:
            c.call("echo", "echo", {"n": 1})
    assert len(echo_server.requests) == 1
    e = info.value
    assert e.status == 400 and "bad field" in str(e) and e.backend == "echo"
    assert e.request_id == echo_server.last.header("x-request-id")  # ours, as none came back


def test_server_errors_retry_until_max_attempts(pm, echo_server):
    echo_server.script(*[err(500)] * 10)
    with make(pm, echo_server, retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
              breaker=BreakerPolicy(minimum_calls=100, window_size=100)) as c:
        with pytest.raises(TransientError) as info:
            c.call("echo", "echo", {"n": 1})
    assert len(echo_server.requests) == 3
    assert info.value.status == 500 and info.value.key_id


def test_backoff_grows_exponentially(pm, echo_server):
    clock, retries = ManualClock(), Retries()
    pm.add_plugin(retries, name="retries")
    stamps = [stamped(clock, echo_server, err(500)) for _ in range(4)]
    echo_server.script(*[answer for answer, _ in stamps])
    policy = RetryPolicy(max_attempts=5, base_delay=0.1, multiplier=2.0, max_delay=1.0, jitter=False)
    with make(pm, echo_server, retry=policy, clock=clock,
              breaker=BreakerPolicy(minimum_calls=100, window_size=100)) as c:
        f = c.submit("echo", "echo", {"n": 1})
        delays = []
        for _ in range(4):
            delays.append(retries.next().delay)
            clock.advance(delays[-1])
        assert f.result(10).attempts == 5
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8])
    times = [t[0] for _, t in stamps]
    assert [b - a for a, b in zip(times, times[1:])] == pytest.approx([0.1, 0.2, 0.4])


def test_a_retry_never_waits_past_the_deadline(pm, echo_server):
    echo_server.script(err(503, {"retry-after": "30"}))
    with make(pm, echo_server, clock=ManualClock()) as c:
        # The clock never moves: the error can only come from giving up at once.
        with pytest.raises(TransientError):
            c.call("echo", "echo", {"n": 1}, deadline=2.0)
    assert len(echo_server.requests) == 1


def test_a_429_moves_work_to_another_key(pm, echo_server):
    echo_server.script(err(429, {"retry-after": "20"}))
    with make(pm, echo_server, keys=("test-key-1", "test-key-2"), strategy="first-available",
              clock=ManualClock()) as c:
        res = c.call("echo", "echo", {"n": 1})  # with the clock stopped: no wait for key 1
    assert res.attempts == 2
    assert [r.bearer_token() for r in echo_server.requests] == ["test-key-1", "test-key-2"]


def test_rejected_key_is_taken_out_of_rotation(pm, echo_server):
    echo_server.script(err(401, message="invalid key"))
    with make(pm, echo_server, keys=("test-key-1", "test-key-2"), strategy="first-available") as c:
        assert c.call("echo", "echo", {"n": 1}).attempts == 2
        for i in range(5):
            c.call("echo", "echo", {"n": i})
        keys = c.stats().keys
    assert [r.bearer_token() for r in echo_server.requests[2:]] == ["test-key-2"] * 5
    assert any(v.get("healthy") is False for v in keys.values())


def test_all_keys_rejected_fails_with_auth_error(pm, echo_server):
    echo_server.script(err(401), err(401), err(401))
    with make(pm, echo_server, keys=("test-key-1", "test-key-2")) as c:
        with pytest.raises(AuthError):
            c.call("echo", "echo", {"n": 1})


def test_learned_limit_makes_requests_wait_instead_of_being_refused(pm, echo_server):
    # The server says: 60 per minute, 0 left, resets in 0.5 s.
    echo_server.script(ServerResponse.json({"echo": {}, "key": None}, headers={
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "500ms"}))
    clock = ManualClock()
    with make(pm, echo_server, clock=clock) as c:
        c.call("echo", "echo", {"n": 1})
        f = c.submit("echo", "echo", {"n": 2})
        assert c.stats().queue_depth == 1 and not f.done()  # waits; never refused
        assert len(echo_server.requests) == 1
        clock.advance(1.0)  # the reset, or one request's worth of 60/min, has passed
        assert f.result(10).attempts == 1
        snap = c.stats().keys
    # read as an exact bucket (issue 12): one request refills in the 0.5 s reset, so
    # 2/s, not the 1/s a per-minute reading of "60" would give
    learned = next(iter(snap.values()))["limiter"]
    assert learned["requests_per_minute"] == pytest.approx(120, rel=0.01)
    assert learned["requests"]["rate_source"] == "headers: reset"


def test_configured_rate_limit_is_never_exceeded(pm, echo_server):
    key = ApiKey("test-key-1", requests_per_minute=600, burst=2)  # 10/s, burst 2
    clock = ManualClock()
    with Client([BackendConfig("echo", keys=[key], base_url=echo_server.url)],
                ClientConfig(max_concurrency=8), plugin_manager=pm, clock=clock) as c:
        futs = [c.submit("echo", "echo", {"n": i}) for i in range(12)]
        for f in futs[:2]:
            f.result(10)  # the burst goes at once
        for sent in range(3, 13):
            assert len(echo_server.requests) <= sent - 1  # nothing more until time passes
            clock.advance(0.1001)  # (a hair over: float sums never fall short)
            futs[sent - 1].result(10)  # one request's worth refilled: one more goes
        assert len(echo_server.requests) == 12
    assert [f.result().text for f in futs] == [f'{{"n": {i}}}' for i in range(12)]


def test_rate_limited_error_is_final_after_attempts(pm, echo_server):
    echo_server.script(*[err(429, {"retry-after": "0"})] * 5)
    with make(pm, echo_server, retry=RetryPolicy(max_attempts=2, base_delay=0.01)) as c:
        with pytest.raises(RateLimited):
            c.call("echo", "echo", {"n": 1})
        assert c.stats().backends["echo"]["rate_limited"] == 2


def test_forbidden_is_not_a_bad_key(pm, echo_server):
    # 403 is about the resource, not the key: no key is taken out of rotation.
    echo_server.script(err(403, message="no access to this model"))
    with make(pm, echo_server, keys=("test-key-1", "test-key-2")) as c:
        with pytest.raises(AuthError):
            c.call("echo", "echo", {"n": 1})
        assert all(v.get("healthy") for v in c.stats().keys.values())


def test_a_redirect_is_an_error_not_a_result(pm, echo_server):
    echo_server.script(ServerResponse(301, {"Location": "https://elsewhere.invalid/"}, b""))
    with make(pm, echo_server) as c:
        with pytest.raises(InvalidRequest) as info:
            c.call("echo", "echo", {"n": 1})
    assert info.value.status == 301 and len(echo_server.requests) == 1
