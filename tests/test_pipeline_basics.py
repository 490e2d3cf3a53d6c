"""The pipeline over real HTTP: results, ordering, priorities, bounds, deadlines, bad input."""

from __future__ import annotations

import threading
import time

import pytest

from ipfs_accelerate_py import (
    BackendConfig,
    Client,
    ClientConfig,
    Priority,
    Request,
    RetryPolicy,
    Secret,
)
from ipfs_accelerate_py.errors import (
    ClientClosedError,
    ConfigError,
    DeadlineExceeded,
    InvalidRequest,
    QueueFullError,
    UnknownPluginError,
)
from ipfs_accelerate_py.http import Transport
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import ManualClock, hold_worker


def make(pm, srv, keys=("test-key-1",), clock=time.monotonic, transport=None, **cfg):
    return Client([BackendConfig("echo", keys=list(keys), base_url=srv.url)], ClientConfig(**cfg),
                  plugin_manager=pm, seed=7, clock=clock, transport=transport)


def test_call_submit_and_map_keep_input_order(pm, echo_server):
    with make(pm, echo_server, max_concurrency=8) as c:
        assert c.call("echo", "echo", {"n": 0}).text == '{"n": 0}'
        fut = c.submit(Request("echo", {"n": 1}, backend="echo"))
        assert fut.result().text == '{"n": 1}'
        out = c.map([Request("echo", {"n": i}, backend="echo") for i in range(50)])
        assert [r.text for r in out] == [f'{{"n": {i}}}' for i in range(50)]


def test_request_id_is_sent_and_carried(pm, echo_server):
    with make(pm, echo_server) as c:
        req = Request("echo", {"n": 5}, backend="echo")
        res = c.call(req)
        assert echo_server.last.header("x-request-id") == req.request_id
        assert res.request_id == req.request_id
        assert res.provider_request_id == "srv-5"


def test_single_backend_is_the_default(pm, echo_server):
    with make(pm, echo_server) as c:
        assert c.call(Request("echo", {"n": 2})).backend == "echo"


def test_high_priority_overtakes_queued_normal_and_low(pm, echo_server):
    order: list[int] = []
    with make(pm, echo_server, max_concurrency=1) as c:
        release = hold_worker(echo_server, c, "echo", "echo", {"n": -1})
        futs = []
        for i, prio in enumerate([Priority.LOW, Priority.NORMAL, Priority.NORMAL, Priority.HIGH]):
            f = c.submit("echo", "echo", {"n": i}, priority=prio)
            f.add_done_callback(lambda f, i=i: order.append(i))
            futs.append(f)
        release.set()
        for f in futs:
            f.result(10)
    assert order == [3, 1, 2, 0]


def test_full_queue_raises_or_blocks(pm, echo_server):
    with make(pm, echo_server, max_concurrency=1, queue_size=2) as c:
        release = hold_worker(echo_server, c, "echo", "echo", {"n": 0})
        c.submit("echo", "echo", {"n": 1})
        c.submit("echo", "echo", {"n": 2})
        with pytest.raises(QueueFullError, match="full"):
            c.submit("echo", "echo", {"n": 3})
        with pytest.raises(QueueFullError, match="still full"):
            c.submit("echo", "echo", {"n": 3}, block=True, timeout=0.05)
        blocked: list = []
        t = threading.Thread(target=lambda: blocked.append(
            c.submit("echo", "echo", {"n": 4}, block=True, timeout=10)))
        t.start()
        release.set()  # the held request ends, the queue drains, the blocked submit gets in
        t.join(10)
        assert blocked[0].result(10).text == '{"n": 4}'


def test_deadline_fails_a_request_stuck_in_the_queue(pm, echo_server):
    clock = ManualClock()
    with make(pm, echo_server, max_concurrency=1, clock=clock) as c:
        release = hold_worker(echo_server, c, "echo", "echo", {"n": 0})
        late = c.submit("echo", "echo", {"n": 1}, deadline=0.2)
        clock.advance(0.19)
        assert not late.done()
        clock.advance(0.02)  # the reaper fails it though the only worker is busy
        with pytest.raises(DeadlineExceeded):
            late.result(10)
        release.set()
    assert c.stats().backends["echo"]["outcomes"].get("deadline") == 1


class RecordingTransport(Transport):
    """The real transport, noting the timeouts it is given."""

    def __init__(self):
        super().__init__(pool_size=2)
        self.timeouts = []

    def send(self, http, timeout, **kw):
        self.timeouts.append(timeout)
        return super().send(http, timeout, **kw)


def test_read_timeout_never_outlives_the_deadline(pm, echo_server):
    clock = ManualClock()
    transport = RecordingTransport()
    with make(pm, echo_server, clock=clock, transport=transport) as c:
        c.call("echo", "echo", {"n": 1}, deadline=0.3)
        c.call("echo", "echo", {"n": 2})
    (connect, read), (_, read_no_deadline) = transport.timeouts
    assert 0 < read <= 0.3
    assert read_no_deadline == BackendConfig("echo").read_timeout


def test_cancelled_request_never_runs(pm, echo_server):
    with make(pm, echo_server, max_concurrency=1) as c:
        release = hold_worker(echo_server, c, "echo", "echo", {"n": 0})
        f = c.submit("echo", "echo", {"n": 99})
        assert c.stats().queue_depth == 1
        assert f.cancel()
        assert c.stats().queue_depth == 0  # taken out at once, not when it surfaces
        release.set()
    assert all(r.json().get("n") != 99 for r in echo_server.requests)
    assert c.stats().backends["echo"]["outcomes"].get("cancelled") == 1


@pytest.mark.parametrize("field,value", [
    ("max_concurrency", 0), ("queue_size", 0), ("default_deadline", -1.0),
])
def test_invalid_client_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ClientConfig(**{field: value})


@pytest.mark.parametrize("field,value", [
    ("requests_per_minute", 0), ("tokens_per_minute", -5), ("max_concurrent_per_key", 0),
    ("read_timeout", 0),
])
def test_invalid_backend_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BackendConfig("echo", **{field: value})


def test_unknown_priority_and_operation_are_rejected_at_submit(pm, echo_server):
    with pytest.raises(ConfigError, match="priority"):
        Request("echo", priority="URGENT")
    with pytest.raises(ConfigError, match="priority"):
        Request("echo", priority=7)
    with make(pm, echo_server) as c:
        with pytest.raises(InvalidRequest, match="no operation 'nope'.*supported: echo"):
            c.submit("echo", "nope", {})
        with pytest.raises(InvalidRequest, match="does not stream"):
            c.submit("echo", "echo", {}, stream=True)
        with pytest.raises(ConfigError, match="not configured"):
            c.submit("other", "echo", {})
        with pytest.raises(ConfigError, match="no key named"):
            c.submit("echo", "echo", {}, key="missing")


def test_unknown_backend_names_the_package_to_install(pm):
    with pytest.raises(UnknownPluginError, match="pip install ipfs-accelerate-nosuch"):
        Client([BackendConfig("nosuch", keys=["test-key-1"])], plugin_manager=pm)


def test_unknown_strategy_lists_the_installed_ones(pm, echo_server):
    with pytest.raises(UnknownPluginError, match="installed: first-available"):
        make(pm, echo_server, strategy="fastest")


def test_closed_client_refuses_new_work(pm, echo_server):
    c = make(pm, echo_server)
    c.call("echo", "echo", {"n": 1})
    c.close()
    with pytest.raises(ClientClosedError):
        c.submit("echo", "echo", {"n": 2})


def test_close_without_wait_fails_queued_requests_cleanly(pm, echo_server):
    c = make(pm, echo_server, max_concurrency=1)
    release = hold_worker(echo_server, c, "echo", "echo", {"n": 0})
    queued = [c.submit("echo", "echo", {"n": i}) for i in range(1, 5)]
    closer = threading.Thread(target=c.close, kwargs={"wait": False})
    closer.start()  # close() then waits for the held worker
    for f in queued:
        with pytest.raises(ClientClosedError):
            f.result(10)
    release.set()
    closer.join(10)
    assert [r.json().get("n") for r in echo_server.requests] == [0]


def test_batching_coalesces_queued_singles_and_splits_results(pm, echo_server):
    with make(pm, echo_server, max_concurrency=1) as c:
        futs = [c.submit("echo", "embed", {"inputs": ["x" * i]}) for i in range(20)]
        assert [f.result(10).data for f in futs] == [[[float(i)]] for i in range(20)]
    calls = echo_server.protocol.embed_calls
    assert sum(calls) == 20 and max(calls) <= 8 and len(calls) < 20


def test_batch_count_mismatch_is_an_error_never_a_misassignment(pm, echo_server):
    echo_server.script(*[ServerResponse.json({"vectors": [[1.0]]})] * 10)
    with make(pm, echo_server, max_concurrency=1, retry=RetryPolicy(max_attempts=1)) as c:
        futs = [c.submit("echo", "embed", {"inputs": [str(i)]}) for i in range(3)]
        outcomes = []
        for f in futs:
            try:
                outcomes.append(f.result(10).data)
            except Exception as exc:
                outcomes.append(type(exc).__name__)
    # Either a lone request got its own answer, or the batch failed as a whole.
    assert all(o == [[1.0]] or o == "TransientError" for o in outcomes)
    assert "TransientError" in outcomes


def test_lone_batchable_request_waits_the_batch_window_in_the_queue(pm, echo_server):
    clock = ManualClock()
    with make(pm, echo_server, clock=clock, max_concurrency=2) as c:
        window = c.backends["echo"].config.batch_window
        f = c.submit("echo", "embed", {"inputs": ["abc"]})
        g = c.submit("echo", "echo", {"n": 1})  # not batchable: runs at once
        assert g.result(10).text == '{"n": 1}'
        assert not f.done() and c.stats().queue_depth == 1  # held in the queue, no worker
        assert c.stats().in_flight == 0
        clock.advance(window)
        assert f.result(10).data == [[3.0]]
    assert echo_server.protocol.embed_calls == [1]


def test_batch_window_gathers_requests_into_one_call(pm, echo_server):
    clock = ManualClock()
    with make(pm, echo_server, clock=clock, max_concurrency=4) as c:
        futs = [c.submit("echo", "embed", {"inputs": ["x" * i]}) for i in range(11)]
        clock.advance(c.backends["echo"].config.batch_window)
        assert [f.result(10).data for f in futs] == [[[float(i)]] for i in range(11)]
    assert sorted(echo_server.protocol.embed_calls) == [3, 8]  # a window holds one full batch


def test_streaming_result(pm, echo_server):
    with make(pm, echo_server) as c:
        chunks = [ch.text for ch in c.stream("echo", "stream", {"words": ["a", "b", "c"]})]
        assert chunks == ["a", "b", "c"]
        assert c.stats().backends["echo"]["outcomes"] == {"success": 1}
        assert c.stats().backends["echo"]["in_flight"] == 0


def test_stream_closed_early_releases_its_key(pm, echo_server):
    with make(pm, echo_server, keys=("test-key-1",)) as c:
        s = c.stream("echo", "stream", {"words": ["a", "b", "c"]})
        next(iter(s))
        key_id = "key-" + Secret("test-key-1").fingerprint()
        assert c.stats().keys["echo/" + key_id]["in_flight"] == 1
        s.close()
        assert c.stats().backends["echo"]["in_flight"] == 0


def test_stats_snapshot_and_reset(pm, echo_server):
    with make(pm, echo_server, keys=("test-key-1", "test-key-2")) as c:
        c.map([Request("echo", {"n": i}, backend="echo") for i in range(10)])
        snap = c.stats()
        d = snap.to_dict()
        assert d["backends"]["echo"]["outcomes"]["success"] == 10
        assert d["backends"]["echo"]["latency_p50"] > 0
        assert d["backends"]["echo"]["breaker"] == "closed"
        assert sum(v["outcomes"].get("success", 0) for v in d["keys"].values()) == 10
        assert "echo" in snap.table() and "p95 ms" in snap.table()
        c.reset_stats()
        assert c.stats().backends["echo"]["requests"] == 0


def test_request_id_header_can_be_turned_off(pm, echo_server):
    with make(pm, echo_server, send_request_id=False) as c:
        c.call("echo", "echo", {"n": 1})
    assert echo_server.last.header("x-request-id") is None


def test_admission_wakes_the_reaper_only_for_a_request_due_before_it_looks(pm, echo_server):
    # Every request has a deadline by default; waking the reaper for each one was a thread
    # switch per request.  The driver says when its reaper looks next (``reaper_due``);
    # admission wakes it only for a request due before then.
    from ipfs_accelerate_py.pipeline import Pipeline
    from ipfs_accelerate_py.state import InMemoryStateStore

    clock = ManualClock()
    transport = Transport(pool_size=1)
    p = Pipeline([BackendConfig("echo", keys=["test-key-1"], base_url=echo_server.url)],
                 ClientConfig(default_deadline=600.0), pm, clock, 1, transport,
                 InMemoryStateStore())
    wakes: list[float] = []
    p.s.wake_reaper = lambda: wakes.append(clock())

    def offer(**fields):
        with p.s.lock:
            p.admission.offer(p.admission.admit(Request("echo", {"n": 1}, backend="echo",
                                                        **fields)), wake=False)

    offer()  # a driver that never said when it looks: woken, as before
    assert len(wakes) == 1
    p.s.reaper_due = clock() + 0.25  # the reaper sleeps a quarter second
    for _ in range(50):
        offer()  # due in 600 s: the reaper sees them when it looks
    assert len(wakes) == 1
    offer(deadline=0.1)  # due before the reaper looks: woken
    assert len(wakes) == 2
    p.s.reaper_due = float("inf")  # the reaper waits for a wake-up
    offer()
    assert len(wakes) == 3
    transport.close()


def test_a_parser_that_returns_no_result_fails_the_request_and_frees_its_slot(echo_server):
    # It once escaped the attempt unsettled: the caller saw an AttributeError and the
    # client's concurrency slot stayed taken for good.
    from echo_backend import EchoBackend

    from ipfs_accelerate_py.errors import PluginError
    from ipfs_accelerate_sim.testing import make_client

    class NoResult(EchoBackend):
        def parse_echo(self, request, response):
            return self.decode_json(response)  # a dict, not a Result

    with make_client(NoResult, echo_server.url, concurrency=1) as c:
        for _ in range(2):  # the second finds the only slot free again
            with pytest.raises(PluginError, match="not a Result"):
                c.call("echo", "echo", {"n": 1})
            with pytest.raises(PluginError, match="not a Result"):
                c.submit("echo", "echo", {"n": 2}).result(10)
        assert c.stats().in_flight == 0
    assert len(echo_server.requests) == 4  # a plugin's bug is not retried
