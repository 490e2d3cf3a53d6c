"""The asyncio driver's own behaviour, over real HTTP to local servers: its API
(``await call``, handles, ``async for`` streams, ``map``, ``async with``), exact
cancellation (queued, in flight, between attempts, while streaming; capacity always given
back through settlement, nothing sent twice), running inside a loop that is already
running with no blocking call on it (asyncio debug mode with a slow-callback threshold)
and no thread per request, the transport's proxies and secrets, and an unchanged plugin
backend.  The behaviour the drivers share is re-run against both in
``test_async_parity.py``."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py import BackendConfig, ClientConfig, Request, RetryPolicy
from ipfs_accelerate_py.aio import AsyncClient, AsyncTransport
from ipfs_accelerate_py.aio.bridge import await_
from ipfs_accelerate_py.errors import ConnectionFailed, TransientError
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_py.wire.sse import format_sse
from ipfs_accelerate_sim.testing import LocalServer, ManualClock


def make(pm, srv, keys=("test-key-1",), clock=None, **cfg):
    extra = {"clock": clock} if clock is not None else {}
    per_key = cfg.pop("max_concurrent_per_key", 8)
    return AsyncClient([BackendConfig("echo", keys=list(keys), base_url=srv.url,
                                      max_concurrent_per_key=per_key)],
                       ClientConfig(**cfg), plugin_manager=pm, seed=7, **extra)


def run(coro):
    return asyncio.run(coro, debug=True)


def held(srv: LocalServer, n: int = 1) -> tuple[threading.Event, threading.Semaphore]:
    """Script the next ``n`` requests to wait at the server until the event is set."""
    release, arrived = threading.Event(), threading.Semaphore(0)

    def hold(req):
        arrived.release()
        release.wait(30)
        return srv.protocol(req)

    srv.script(*[hold] * n)
    return release, arrived


async def arrived_at_server(arrived: threading.Semaphore, n: int = 1) -> None:
    for _ in range(n):  # off the loop: the server is another thread
        assert await asyncio.to_thread(arrived.acquire, True, 30)


def gauges(client, key="test-key-1"):
    snap = client.stats()
    key_id = next(k for k in snap.keys)
    return snap.in_flight, snap.queue_depth, snap.keys[key_id]["in_flight"], \
        snap.backends["echo"]["outcomes"]


# ------------------------------------------------------------------ the API
def test_call_submit_stream_map_and_async_with(pm, echo_server):
    async def main():
        async with make(pm, echo_server, max_concurrency=8) as c:
            res = await c.call("echo", "echo", {"n": 1})
            handle = await c.submit(Request("echo", {"n": 2}, backend="echo"))
            res2 = await handle
            out = await c.map([Request("echo", {"n": i}, backend="echo") for i in range(30)])
            chunks = [ch.text async for ch in c.stream("echo", "stream", {"words": ["a", "b"]})]
            return res, res2, out, chunks, c.stats()

    res, res2, out, chunks, snap = run(main())
    assert res.text == '{"n": 1}' and res.attempts == 1 and res.backend == "echo"
    assert res2.request_id == echo_server.requests[1].header("x-request-id")
    assert [r.text for r in out] == [f'{{"n": {i}}}' for i in range(30)]
    assert chunks == ["a", "b"]
    assert snap.backends["echo"]["outcomes"] == {"success": 33}
    assert snap.in_flight == 0 and snap.queue_depth == 0


def test_errors_are_the_same_typed_errors(pm, echo_server):
    echo_server.script(*[ServerResponse.json({"error": {"message": "down"}}, 503)] * 2)

    async def main():
        async with make(pm, echo_server, retry=RetryPolicy(max_attempts=2, base_delay=0.001,
                                                           max_delay=0.002)) as c:
            with pytest.raises(TransientError) as info:
                await c.call("echo", "echo", {"n": 1})
            return info.value

    err = run(main())
    assert err.status == 503 and err.attempts == 2 and "down" in str(err)


# ------------------------------------------------------------------ cancellation
def test_cancelling_a_task_in_flight_frees_its_slot_through_settlement(pm, echo_server):
    release, arrived = held(echo_server)

    async def main():
        async with make(pm, echo_server, max_concurrency=4, max_concurrent_per_key=1) as c:
            task = asyncio.create_task(c.call("echo", "echo", {"n": 1}))
            await arrived_at_server(arrived)
            assert gauges(c)[2] == 1  # the key's only slot is taken
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            after_cancel = gauges(c)
            release.set()
            nxt = await c.call("echo", "echo", {"n": 2})  # the slot is free again
            return after_cancel, nxt

    (in_flight, depth, key_in_flight, outcomes), nxt = run(main())
    assert (in_flight, depth, key_in_flight) == (0, 0, 0)
    assert outcomes == {"cancelled": 1}
    assert nxt.text == '{"n": 2}'
    assert [r.json()["n"] for r in echo_server.requests] == [1, 2]  # sent once, never again


def test_cancelling_a_queued_handle_never_sends_it(pm, echo_server):
    release, arrived = held(echo_server)

    async def main():
        async with make(pm, echo_server, max_concurrency=1) as c:
            first = await c.submit("echo", "echo", {"n": 0})
            await arrived_at_server(arrived)
            queued = await c.submit("echo", "echo", {"n": 99})
            assert c.stats().queue_depth == 1
            assert queued.cancel()
            assert c.stats().queue_depth == 0  # out of the queue at once
            with pytest.raises(asyncio.CancelledError):
                await queued
            release.set()
            await first
            return gauges(c)

    in_flight, depth, key_in_flight, outcomes = run(main())
    assert outcomes == {"success": 1, "cancelled": 1}
    assert (in_flight, key_in_flight) == (0, 0)
    assert all(r.json()["n"] != 99 for r in echo_server.requests)


def test_cancelling_between_attempts_takes_it_out_of_the_backoff(pm, echo_server):
    clock = ManualClock()  # never advanced: the retry waits out its backoff forever
    echo_server.script(ServerResponse.json({"error": {"message": "down"}}, 503))

    async def main():
        async with make(pm, echo_server, clock=clock,
                        retry=RetryPolicy(base_delay=50, max_delay=60)) as c:
            handle = await c.submit("echo", "echo", {"n": 1})
            for _ in range(3000):  # bounded: a bug fails here, it does not hang
                if c.stats().backends["echo"]["retries"]:
                    break
                await asyncio.sleep(0.01)
            assert c.stats().queue_depth == 1  # waiting out its backoff
            assert handle.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(handle, 30)
            return gauges(c)

    in_flight, depth, key_in_flight, outcomes = run(main())
    assert (in_flight, depth, key_in_flight) == (0, 0, 0)
    assert outcomes == {"cancelled": 1}
    assert len(echo_server.requests) == 1


def test_cancelling_the_task_reading_a_stream_releases_its_key(pm, echo_server):
    gate = threading.Event()

    def slow_stream(req):
        def gen():
            yield format_sse({"text": "a"})
            gate.wait(30)
            yield format_sse("[DONE]")
        return ServerResponse.stream(gen())

    echo_server.script(slow_stream)

    async def main():
        async with make(pm, echo_server) as c:
            got: list[str] = []

            async def read():
                async for ch in c.stream("echo", "stream", {}):
                    got.append(ch.text)

            task = asyncio.create_task(read())
            while not got:
                await asyncio.sleep(0.01)
            assert c.stats().in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            result = gauges(c)
            gate.set()
            return got, result

    got, (in_flight, depth, key_in_flight, outcomes) = run(main())
    assert got == ["a"]
    assert (in_flight, key_in_flight) == (0, 0)
    assert sum(outcomes.values()) == 1  # ended once


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=1, max_size=40),
       concurrency=st.integers(1, 6), keys=st.integers(1, 3))
def test_random_cancellation_loses_nothing_duplicates_nothing_leaks_no_slot(
        pm, echo_server, plan, concurrency, keys):
    """Tasks cancelled at random points (queued, just dispatched, in flight, never): each
    ends exactly once, cancelled or with its own answer; no request reaches the server
    twice; every slot and the queue are empty afterwards."""
    class Events:
        def __init__(self):
            self.queued, self.finished = [], []

        def accelerate_on_queued(self, ev):
            self.queued.append(ev.request_id)

        def accelerate_on_finished(self, ev):
            self.finished.append((ev.request_id, ev.outcome.value))

    events = Events()

    async def main():
        async with make(pm, echo_server, keys=[f"test-key-{i}" for i in range(1, keys + 1)],
                        max_concurrency=concurrency, max_concurrent_per_key=2) as c:
            c.add_observer(events)
            reqs = [Request("echo", {"n": i}, backend="echo") for i in range(len(plan))]
            tasks = [asyncio.create_task(c.call(r)) for r in reqs]
            for (cancel, after), task in zip(plan, tasks):
                if cancel:
                    for _ in range(after):  # let the pipeline move on a little first
                        await asyncio.sleep(0)
                    task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)
            return reqs, outcomes, c.stats()

    before = len(echo_server.requests)
    reqs, outcomes, snap = run(main())
    seen = [r.header("x-request-id") for r in echo_server.requests[before:]]
    assert len(seen) == len(set(seen))  # never sent twice
    done = 0
    for req, out in zip(reqs, outcomes):
        if isinstance(out, asyncio.CancelledError):
            continue
        assert not isinstance(out, BaseException), out
        assert out.request_id == req.request_id and out.text == f'{{"n": {req.payload["n"]}}}'
        assert req.request_id in seen
        done += 1
    # Every request that was submitted (a task cancelled before it ran submitted none)
    # ended exactly once: with its answer, or cancelled.
    assert sorted(events.queued) == sorted(rid for rid, _ in events.finished)
    assert len(events.finished) == len({rid for rid, _ in events.finished})
    assert {o for _, o in events.finished} <= {"success", "cancelled"}
    counted = snap.backends["echo"]["outcomes"]
    # A task cancelled just as its answer arrived drops an answer that did arrive: a
    # success in the stats, never a second send.
    assert counted.get("success", 0) >= done
    assert counted.get("success", 0) + counted.get("cancelled", 0) == len(events.queued)
    assert snap.in_flight == 0 and snap.queue_depth == 0
    assert all(k["in_flight"] == 0 for k in snap.keys.values())


# ------------------------------------------------------------------ on someone's loop
class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "Executing" in text and "took" in text:
            self.records.append(text)


def test_no_blocking_call_on_a_running_loop_and_no_thread_per_request(pm, echo_server):
    """Inside an application's own running loop (debug mode, slow-callback threshold
    0.5 s), 40 requests are held at the server for 1.2 s each, and a stream is read: a
    blocking send or read on the loop would take 0.6 s and be reported."""
    def slow(req):
        threading.Event().wait(1.2)
        return echo_server.protocol(req)

    echo_server.script(*[slow] * 40)
    slow_cb = _SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow_cb)
    client = make(pm, echo_server, max_concurrency=64, max_concurrent_per_key=64)

    async def app():
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.5
        threads_before = {t.name for t in threading.enumerate()}
        async with client:
            tasks = [asyncio.create_task(client.call("echo", "echo", {"n": i})) for i in range(40)]
            while client.stats().in_flight < 40:
                await asyncio.sleep(0.01)
            during = {t.name for t in threading.enumerate()} - threads_before
            out = await asyncio.gather(*tasks)
            text = [ch.text async for ch in client.stream("echo", "stream",
                                                           {"words": ["x", "y"]})]
        return out, text, during

    try:
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        out, text, during = loop.run_until_complete(app())
        loop.close()
    finally:
        logging.getLogger("asyncio").removeHandler(slow_cb)
    assert [r.text for r in out] == [f'{{"n": {i}}}' for i in range(40)]
    assert text == ["x", "y"]
    assert slow_cb.records == []
    # Threads that appeared while 40 requests were in flight: only the test server's
    # (one per connection); none on the client side.
    assert all(name.startswith("Thread-") for name in during), during


def test_the_bridge_refuses_to_block_outside_the_driver():
    async def nothing():
        return 1

    with pytest.raises(RuntimeError, match="outside the AsyncClient"):
        await_(nothing())


# ------------------------------------------------------------------ transport
def test_proxies_come_from_the_environment_and_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    t = AsyncTransport()
    assert t._proxy("http://api.example/v1/chat") == "http://127.0.0.1:3128"
    assert t._proxy("http://internal.example/v1/chat") is None
    assert AsyncTransport(trust_env=False)._proxy("http://api.example/v1") is None


def test_requests_go_through_the_environment_proxy(pm, echo_server, monkeypatch):
    proxy = LocalServer(lambda req: ServerResponse.json(
        {"echo": {"via": "proxy"}, "key": req.bearer_token()}))
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")

        async def main():
            async with make(pm, echo_server) as c:
                return await c.call("echo", "echo", {"n": 1})

        res = run(main())
    finally:
        proxy.close()
    assert res.text == '{"via": "proxy"}'
    assert len(proxy.requests) == 1 and not echo_server.requests


def test_a_refused_connection_is_typed_and_never_shows_the_key(pm):
    import socket

    s = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()

    async def main():
        async with AsyncClient([BackendConfig("echo", keys=["test-key-1"], base_url=url)],
                               ClientConfig(retry=RetryPolicy(max_attempts=1)),
                               plugin_manager=pm) as c:
            with pytest.raises(ConnectionFailed) as info:
                await c.call("echo", "echo", {"n": 1})
            return info.value

    err = run(main())
    assert err.__cause__ is None and err.__context__ is None
    assert "test-key-1" not in str(err) + repr(err.__dict__)


def test_the_sent_request_keeps_no_credential(pm, echo_server):
    echo_server.script(ServerResponse.json({"error": {"message": "bad"}}, 400))

    async def main():
        async with make(pm, echo_server) as c:
            try:
                await c.call("echo", "echo", {"n": 1})
            except Exception as exc:
                return exc

    err: Any = run(main())
    assert echo_server.last.header("authorization") == "Bearer test-key-1"  # it was sent
    sent = err.response.request
    assert "test-key-1" not in str(sent.headers) and sent.headers["Authorization"] != \
        "Bearer test-key-1"


def test_an_unchanged_plugin_backend_calls_and_streams():
    """The OpenAI plugin, written for the sync client, over its own protocol server."""
    from ipfs_accelerate_openai.backend import OpenAIBackend
    from ipfs_accelerate_openai.server import OpenAIServer
    from ipfs_accelerate_py.hookspecs import hookimpl
    from ipfs_accelerate_py.plugins import PluginManager

    class Only:
        @staticmethod
        @hookimpl
        def accelerate_backends():
            return [OpenAIBackend]

    manager = PluginManager(load_entry_points=False)
    manager.add_plugin(Only, name="only-openai")
    srv = LocalServer(OpenAIServer())
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    async def main():
        async with AsyncClient([BackendConfig("openai", keys=["test-key-1"],
                                              base_url=srv.url + "/v1")],
                               plugin_manager=manager) as c:
            res = await c.call("openai", "chat", payload)
            stream = await c.open_stream("openai", "chat", payload)
            chunks = [ch.text async for ch in stream]
            return res, chunks, stream.text, c.stats()

    try:
        res, chunks, text, snap = run(main())
    finally:
        srv.close()
    assert res.text and res.usage is not None and res.usage.total_tokens > 0
    assert len(chunks) > 1 and "".join(chunks) == text and text
    assert snap.backends["openai"]["outcomes"] == {"success": 2}


def test_importing_the_async_client_loads_no_server_code():
    import subprocess
    import sys

    code = ("import sys, ipfs_accelerate_py.aio; print([m for m in ('http.server', "
            "'socketserver', 'ipfs_accelerate_py.server', 'ipfs_accelerate_sim', 'aiohttp.web')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_an_in_memory_transport_works_too(pm):
    import echo_backend

    from ipfs_accelerate_sim.testing import MemoryServer

    with MemoryServer(echo_backend.EchoServer()) as server:
        async def main():
            async with AsyncClient([BackendConfig("echo", keys=["test-key-1"])],
                                   plugin_manager=pm, transport=server.transport) as c:
                res = await c.call("echo", "echo", {"n": 3})
                text = [ch.text async for ch in c.stream("echo", "stream", {"words": ["p"]})]
                return res, text

        res, text = run(main())
    assert res.text == '{"n": 3}' and text == ["p"]
    assert len(server.requests) == 2
