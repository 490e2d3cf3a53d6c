"""The circuit breaker over real HTTP: opening, half-open probing, closing, and waiting
through an outage with zero lost requests."""

from __future__ import annotations

import threading
import time

import pytest

from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, RetryPolicy, hookimpl
from ipfs_accelerate_py.errors import CircuitOpenError, InvalidRequest, TransientError
from ipfs_accelerate_py.server import ServerResponse


class Outage:
    """Wraps the echo protocol: answers 503 while ``down`` is set; logs call times."""

    def __init__(self, srv):
        self.srv = srv
        self.down = threading.Event()
        self.calls: list[tuple[float, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, req):
        down = self.down.is_set()
        with self.lock:
            self.calls.append((time.monotonic(), down))
        if down:
            return ServerResponse.json({"error": {"message": "unavailable"}}, 503)
        return self.srv.protocol(req)


def client(pm, srv, **cfg):
    cfg.setdefault("retry", RetryPolicy(base_delay=0.01, max_delay=0.05))
    cfg.setdefault("breaker", BreakerPolicy(window_size=10, minimum_calls=4,
                                            failure_rate_threshold=0.5, open_interval=0.3,
                                            interval_multiplier=1.5, max_open_interval=0.6))
    return Client([BackendConfig("echo", keys=["test-key-1"], base_url=srv.url)],
                  ClientConfig(**cfg), plugin_manager=pm, seed=11)


def test_breaker_opens_half_opens_and_closes(pm, echo_server):
    outage = Outage(echo_server)
    changes = []

    class Watch:
        @hookimpl
        def accelerate_on_breaker_changed(self, event):
            changes.append((event.old_state, event.new_state))

    pm.add_plugin(Watch(), name="watch")
    echo_server.protocol, proto = outage, echo_server.protocol
    outage.srv = type("S", (), {"protocol": proto})()
    outage.down.set()
    with client(pm, echo_server, max_concurrency=2) as c:
        futs = [c.submit("echo", "echo", {"n": i}) for i in range(6)]
        deadline = time.monotonic() + 5
        while c.breaker_state("echo") != "open" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.breaker_state("echo") == "open"
        time.sleep(0.5)
        outage.down.clear()
        assert [f.result(10).text for f in futs] == [f'{{"n": {i}}}' for i in range(6)]
        assert c.breaker_state("echo") == "closed"
    assert ("closed", "open") in changes and ("open", "half_open") in changes
    assert ("half_open", "closed") in changes


def test_outage_delays_work_and_loses_none(pm, echo_server):
    outage = Outage(echo_server)
    proto = echo_server.protocol
    outage.srv = type("S", (), {"protocol": proto})()
    echo_server.protocol = outage
    with client(pm, echo_server, max_concurrency=8) as c:
        results = []
        lock = threading.Lock()

        def producer(offset):
            for i in range(40):
                f = c.submit("echo", "echo", {"n": offset + i})
                f.add_done_callback(lambda f: (lock.acquire(), results.append(f), lock.release()))
                time.sleep(0.005)

        threading.Timer(0.1, outage.down.set).start()
        threading.Timer(1.1, outage.down.clear).start()
        threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c.close(wait=True, timeout=30)
    assert len(results) == 160
    assert all(f.exception() is None for f in results)
    texts = sorted(f.result().text for f in results)
    assert len(set(texts)) == 160
    # While it was down, the breaker kept calls few: probes, not a storm.
    during = [t for t, down in outage.calls if down]
    assert len(during) <= 40


def test_429s_never_trip_the_breaker(pm, echo_server):
    echo_server.script(*[ServerResponse.json({"error": {"message": "slow down"}}, 429,
                                             headers={"retry-after": "0"})] * 12)
    with client(pm, echo_server, retry=RetryPolicy(max_attempts=20, base_delay=0.001)) as c:
        assert c.call("echo", "echo", {"n": 1}).attempts == 13
        assert c.breaker_state("echo") == "closed"


def test_client_errors_never_trip_the_breaker(pm, echo_server):
    echo_server.script(*[ServerResponse.json({"error": {"message": "bad"}}, 400)] * 10)
    with client(pm, echo_server) as c:
        for i in range(10):
            with pytest.raises(InvalidRequest):
                c.call("echo", "echo", {"n": i})
        assert c.breaker_state("echo") == "closed"


def test_fail_fast_is_an_option(pm, echo_server):
    echo_server.script(*[ServerResponse.json({"error": {"message": "down"}}, 503)] * 50)
    with client(pm, echo_server, fail_fast=True, max_concurrency=1,
                retry=RetryPolicy(max_attempts=1)) as c:
        for i in range(4):  # 503s until the breaker opens, then refused at once
            with pytest.raises((TransientError, CircuitOpenError)):
                c.call("echo", "echo", {"n": i})
        assert c.breaker_state("echo") == "open"
        with pytest.raises(CircuitOpenError):
            c.call("echo", "echo", {"n": 9})


def test_deadline_bounds_the_wait_for_an_open_breaker(pm, echo_server):
    from ipfs_accelerate_py.errors import DeadlineExceeded

    echo_server.script(*[ServerResponse.json({"error": {"message": "down"}}, 503)] * 200)
    with client(pm, echo_server, max_concurrency=1,
                breaker=BreakerPolicy(window_size=4, minimum_calls=2, open_interval=5.0)) as c:
        with pytest.raises(DeadlineExceeded) as info:
            c.call("echo", "echo", {"n": 1}, deadline=0.8)
        assert info.value.last_error is not None and info.value.last_error.status == 503


def test_requests_picked_before_the_breaker_opened_are_not_sent_into_the_outage(pm, echo_server):
    """Requests already taken for dispatch when another request's failure trips the
    breaker go back to the queue unsent instead of hitting the failing service."""
    outage = Outage(echo_server)
    outage.srv = type("S", (), {"protocol": echo_server.protocol})()
    echo_server.protocol = outage
    outage.down.set()
    with client(pm, echo_server, max_concurrency=1,
                breaker=BreakerPolicy(window_size=2, minimum_calls=1, open_interval=0.3,
                                      interval_multiplier=1.0, max_open_interval=0.3)) as c:
        first = c.submit("echo", "echo", {"n": 0})
        deadline = time.monotonic() + 5
        while c.breaker_state("echo") != "open" and time.monotonic() < deadline:
            time.sleep(0.005)
        # Simulate a request picked while closed that reaches the send step now.
        bs = c._backends["echo"]
        job_future = c.submit("echo", "echo", {"n": 1})
        job = job_future._job
        with c._cond:
            removed = c._queue.remove(job.entry)
            key = bs.keys[0]
            key.in_flight += 1
            c._in_flight += 1
        assert removed
        before = len(outage.calls)
        assert c._breaker_opened(bs, key, [job]) is True
        assert len(outage.calls) == before and job.attempts == 0
        outage.down.clear()
        assert first.result(10).text == '{"n": 0}'
        assert job_future.result(10).text == '{"n": 1}'
