"""The circuit breaker over real HTTP: opening, half-open probing, closing, and waiting
through an outage with zero lost requests."""

from __future__ import annotations

import threading
import time

import pytest

from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, Request, RetryPolicy, hookimpl
from ipfs_accelerate_py.errors import CircuitOpenError, InvalidRequest, TransientError
from ipfs_accelerate_py.http import Transport
from ipfs_accelerate_py.pipeline import Pipeline
from ipfs_accelerate_py.state import InMemoryStateStore
from ipfs_accelerate_sim.testing import ManualClock
from ipfs_accelerate_py.server import ServerResponse


class Outage:
    """Wraps the echo protocol: answers 503 while ``down`` is set, or for the calls
    numbered in ``down_calls``; logs which calls were made while down."""

    def __init__(self, protocol, down_calls=range(0)):
        self.protocol = protocol
        self.down = threading.Event()
        self.down_calls = down_calls
        self.calls: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self, req):
        with self.lock:
            down = self.down.is_set() or len(self.calls) in self.down_calls
            self.calls.append(down)
        if down:
            return ServerResponse.json({"error": {"message": "unavailable"}}, 503)
        return self.protocol(req)


def client(pm, srv, clock=time.monotonic, **cfg):
    cfg.setdefault("retry", RetryPolicy(base_delay=0.01, max_delay=0.05))
    cfg.setdefault("breaker", BreakerPolicy(window_size=10, minimum_calls=4,
                                            failure_rate_threshold=0.5, open_interval=0.3,
                                            interval_multiplier=1.5, max_open_interval=0.6))
    return Client([BackendConfig("echo", keys=["test-key-1"], base_url=srv.url)],
                  ClientConfig(**cfg), plugin_manager=pm, seed=11, clock=clock)


class Watch:
    def __init__(self):
        self.changes = []
        self.opened = threading.Event()

    @hookimpl
    def accelerate_on_breaker_changed(self, event):
        self.changes.append((event.old_state, event.new_state))
        if event.new_state == "open":
            self.opened.set()


def test_breaker_opens_half_opens_and_closes(pm, echo_server):
    outage = echo_server.protocol = Outage(echo_server.protocol)
    watch = Watch()
    pm.add_plugin(watch, name="watch")
    clock = ManualClock()
    outage.down.set()
    with client(pm, echo_server, clock=clock, max_concurrency=2) as c:
        futs = [c.submit("echo", "echo", {"n": i}) for i in range(6)]
        assert watch.opened.wait(10)  # first attempts fail: no time needs to pass
        assert c.breaker_state("echo") == "open"
        clock.advance(0.29)
        assert c.breaker_state("echo") == "open"
        outage.down.clear()
        clock.advance(0.02)  # open_interval over: a probe goes, succeeds, and the rest follow
        assert [f.result(10).text for f in futs] == [f'{{"n": {i}}}' for i in range(6)]
        assert c.breaker_state("echo") == "closed"
    assert ("closed", "open") in watch.changes and ("open", "half_open") in watch.changes
    assert ("half_open", "closed") in watch.changes


def test_outage_delays_work_and_loses_none(pm, echo_server):
    # Calls 20 to 44 fail: the breaker opens; its probes fail until the service is back.
    outage = echo_server.protocol = Outage(echo_server.protocol, down_calls=range(20, 45))
    with client(pm, echo_server, max_concurrency=8) as c:
        results = []
        lock = threading.Lock()

        def producer(offset):
            for i in range(40):
                f = c.submit("echo", "echo", {"n": offset + i})
                f.add_done_callback(lambda f: (lock.acquire(), results.append(f), lock.release()))

        threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c.close(wait=True, timeout=60)
    assert len(results) == 160
    assert all(f.exception() is None for f in results)
    texts = sorted(f.result().text for f in results)
    assert len(set(texts)) == 160
    assert sum(outage.calls) == 25  # every planned failure happened: the breaker was tested
    assert len(outage.calls) <= 160 + 25  # each failure cost one call, no storm


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
    breaker go back to the queue unsent instead of hitting the failing service.  The
    race is staged on the stages themselves: no threads, no sleeps."""
    outage = echo_server.protocol = Outage(echo_server.protocol)
    outage.down.set()
    clock = ManualClock()
    config = ClientConfig(max_concurrency=2, breaker=BreakerPolicy(window_size=2, minimum_calls=1))
    transport = Transport(pool_size=2)
    p = Pipeline([BackendConfig("echo", keys=["test-key-1"], base_url=echo_server.url,
                                max_concurrent_per_key=2)],
                 config, pm, clock, 1, transport, InMemoryStateStore())
    jobs = [p.admission.admit(Request("echo", {"n": i}, backend="echo")) for i in range(2)]
    with p.s.lock:
        for j in jobs:
            p.admission.offer(j, wake=False)
        first = p.dispatch.pick(clock(), [])
        second = p.dispatch.pick(clock(), [])  # picked while the breaker is closed
    assert first.jobs == [jobs[0]] and second.jobs == [jobs[1]]
    assert p.s.in_flight == 2
    p.run(first)  # fails with 503 and trips the breaker
    assert p.s.backends["echo"].breaker.state(clock()) == "open"
    p.run(second)
    assert len(outage.calls) == 1  # the second was never sent
    assert jobs[1].attempts == 0 and jobs[1].entry.state == "queued"
    assert p.s.in_flight == 0 and p.s.backends["echo"].keys[0].in_flight == 0
    transport.close()
