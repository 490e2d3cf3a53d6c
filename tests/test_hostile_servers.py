"""Every request ends inside its deadline with a typed error, whatever the server does:
the same failure every time (with the breaker opening midway), a body that drips, an
endless stream or body, a gzip bomb, a redirect, a connection cut mid-body, a corrupt
gzip, garbage and huge ``retry-after`` values.  Servers are real sockets on 127.0.0.1.

No test asserts a duration: a call that must not hang is waited for with a generous
bound (its deadline plus several seconds), and memory is measured in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from hostile import RawServer, gzip_bomb, json_response, response_head
from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, RetryPolicy
from ipfs_accelerate_py.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    RateLimited,
    RequestTimeout,
    ResponseTooLarge,
    StreamError,
    TransientError,
    UnexpectedRedirect,
)
from ipfs_accelerate_py.server import ServerResponse

HANG_MARGIN = 10.0  # only to prove a call does not hang; never a performance claim
OK_BODY = json.dumps({"echo": {"n": 1}, "key": None}).encode()


def client_for(pm, url, *, retry=None, breaker=None, **backend):
    retry = retry or RetryPolicy(base_delay=0.01, max_delay=0.05)
    return Client([BackendConfig("echo", keys=["test-key-1"], base_url=url, **backend)],
                  ClientConfig(retry=retry, breaker=breaker or BreakerPolicy()),
                  plugin_manager=pm, seed=7)


def outcome(client, *args, deadline, **fields):
    """Submit and wait (boundedly): the result, or the error it ended with."""
    fut = client.submit("echo", *args, deadline=deadline, **fields)
    try:
        return fut.result(timeout=deadline + HANG_MARGIN)
    except FutureTimeout:
        pytest.fail(f"the call did not end within its deadline of {deadline} s "
                    f"(+{HANG_MARGIN} s)")
    except Exception as exc:  # the typed error is the outcome under test
        return exc


@pytest.fixture
def raw():
    servers = []

    def start(behaviour, max_seconds=30.0):
        srv = RawServer(behaviour, max_seconds)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


# ------------------------------------------------------------------ bounded attempts
def test_same_failure_every_time_ends_after_max_attempts_though_the_breaker_opens(
        pm, echo_server):
    """13.1: a 500 with a validation message every time; the breaker opens after two
    failures.  Waiting for it spends no attempt, but the probes it lets through do."""
    calls = []

    def always_500(req):
        calls.append(req)
        return ServerResponse.json({"error": {"message": "messages[0].role: invalid"}}, 500)

    echo_server.script(*[always_500] * 50)
    breaker = BreakerPolicy(minimum_calls=2, window_size=4, open_interval=0.05,
                            max_open_interval=0.1)
    with client_for(pm, echo_server.url, retry=RetryPolicy(max_attempts=4, base_delay=0.01,
                                                           max_delay=0.02),
                    breaker=breaker) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=30)
        assert c.breaker_state("echo") != "closed"  # it did open midway
    assert isinstance(err, TransientError), err
    assert "messages[0].role: invalid" in str(err) and err.status == 500
    assert err.attempts == 4 and len(calls) == 4


def test_attempts_never_exceed_max_attempts_for_many_requests_in_an_outage(pm, echo_server):
    n, max_attempts = 12, 3
    echo_server.script(*[ServerResponse.json({"error": {"message": "down"}}, 503)] * 500)
    breaker = BreakerPolicy(minimum_calls=2, window_size=4, open_interval=0.05,
                            max_open_interval=0.1)
    with client_for(pm, echo_server.url, breaker=breaker,
                    retry=RetryPolicy(max_attempts=max_attempts, base_delay=0.01,
                                      max_delay=0.02, budget_min_per_second=100)) as c:
        futs = [c.submit("echo", "echo", {"n": i}, deadline=30) for i in range(n)]
        errors = [f.exception(timeout=30 + HANG_MARGIN) for f in futs]
    assert all(isinstance(e, TransientError) for e in errors), errors
    assert all(1 <= e.attempts <= max_attempts for e in errors)
    assert len(echo_server.requests) <= n * max_attempts


# ------------------------------------------------------------------ time bounds
def test_a_body_that_drips_ends_at_the_deadline(pm, raw):
    """13.6: one byte every 0.2 s, each read well inside the read timeout."""
    def drip(conn):
        conn.send(response_head(content_type="application/json", content_length="100000"))
        while conn.send(b" ") and conn.pause(0.2):
            pass

    srv = raw(drip)
    with client_for(pm, srv.url, read_timeout=5) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=2)
    assert isinstance(err, (RequestTimeout, DeadlineExceeded)), err
    assert "deadline" in str(err)


def test_attempt_timeout_bounds_each_attempt_and_the_next_one_succeeds(pm, raw):
    def first_drips(conn):
        if conn.index > 0:
            conn.send(json_response(OK_BODY))
            return True
        conn.send(response_head(content_type="application/json", content_length="100000"))
        while conn.send(b" ") and conn.pause(0.2):
            pass

    srv = raw(first_drips)
    with client_for(pm, srv.url, read_timeout=5, attempt_timeout=1.0) as c:
        res = outcome(c, "echo", {"n": 1}, deadline=20)
    assert not isinstance(res, Exception), res
    assert res.attempts == 2 and json.loads(res.text) == {"n": 1}


def _endless_sse(conn):
    conn.send(response_head(content_type="text/event-stream", transfer_encoding="chunked"))
    event = b'data: {"text": "x"}\n\n'
    while conn.send(b"%x\r\n%s\r\n" % (len(event), event)) and conn.pause(0.02):
        pass


def test_an_endless_stream_handed_to_the_caller_ends_at_the_deadline(pm, raw):
    srv = raw(_endless_sse)
    with client_for(pm, srv.url) as c:
        stream = outcome(c, "stream", {}, deadline=2, stream=True)
        assert not isinstance(stream, Exception), stream
        got = 0
        with pytest.raises(StreamError) as info:
            for chunk in stream:
                got += 1
                assert got < 100_000, "the stream outlived its deadline"
    assert isinstance(info.value.cause_error, RequestTimeout)
    assert info.value.partial_text.startswith("xx")


def test_a_stream_that_never_sends_its_first_event_ends_at_the_deadline(pm, raw):
    def silent(conn):
        conn.send(response_head(content_type="text/event-stream", transfer_encoding="chunked"))
        while conn.send(b"1\r\n:\r\n") and conn.pause(0.2):  # comments only, forever
            pass

    srv = raw(silent)
    with client_for(pm, srv.url, read_timeout=5) as c:
        err = outcome(c, "stream", {}, deadline=2, stream=True)
    assert isinstance(err, (RequestTimeout, DeadlineExceeded)), err


# ------------------------------------------------------------------ size bounds
def _endless_body(conn):
    conn.send(response_head(content_type="application/json", connection="close"))
    block = b"a" * 65536
    while conn.send(block):
        pass


def test_an_endless_body_is_refused_past_the_limit_and_not_retried(pm, raw):
    srv = raw(_endless_body)
    with client_for(pm, srv.url, max_response_bytes=1 << 20) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=20)
    assert isinstance(err, ResponseTooLarge), err
    assert err.limit == 1 << 20 and "max_response_bytes" in str(err)
    assert len(srv.requests) == 1  # not retried


def test_an_endless_stream_line_is_refused(pm, raw):
    def endless_line(conn):
        conn.send(response_head(content_type="text/event-stream", connection="close"))
        conn.send(b"data: ")
        while conn.send(b"a" * 65536):
            pass

    srv = raw(endless_line)
    with client_for(pm, srv.url, max_line_bytes=1 << 20) as c:
        err = outcome(c, "stream", {}, deadline=20, stream=True)
    assert isinstance(err, ResponseTooLarge), err
    assert "max_line_bytes" in str(err) and len(srv.requests) == 1


_RSS_PROBE = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[2])
    import echo_backend
    from ipfs_accelerate_py import BackendConfig, Client, ClientConfig
    from ipfs_accelerate_py.plugins import PluginManager
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo_backend")
    client = Client([BackendConfig("echo", keys=["test-key-1"], base_url=sys.argv[1])],
                    ClientConfig(), plugin_manager=pm)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        client.call("echo", "echo", {"n": 1}, deadline=60)
        error = None
    except Exception as exc:
        error = type(exc).__name__
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client.close()
    print(json.dumps({"error": error, "growth_mb": (after - before) / 1024}))
""")


def _rss_growth(url):
    proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, url, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_endless_body_keeps_memory_bounded_with_the_default_limit(raw):
    srv = raw(_endless_body)
    out = _rss_growth(srv.url)
    assert out["error"] == "ResponseTooLarge"
    assert out["growth_mb"] < 200, out  # the default bound is 64 MiB


@pytest.fixture(scope="module")
def bomb():
    return gzip_bomb(1 << 30)  # 1 GiB of zeros, about 1 MB compressed


def test_a_gzip_bomb_is_bounded_after_decompression(raw, bomb):
    """20.8: 1 MB on the wire, 1 GiB decoded."""
    def send_bomb(conn):
        conn.send(response_head(content_type="application/json", content_encoding="gzip",
                                content_length=str(len(bomb))) + bomb)

    srv = raw(send_bomb)
    out = _rss_growth(srv.url)
    assert out["error"] == "ResponseTooLarge"
    assert out["growth_mb"] < 200, out


# ------------------------------------------------------------------ redirects, cuts
def test_a_redirect_fails_at_once_naming_the_location(pm, echo_server):
    echo_server.script(*[ServerResponse(307, {"Location": "http://elsewhere.invalid/v1/echo"},
                                        b"")] * 5)
    with client_for(pm, echo_server.url) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=20)
    assert isinstance(err, UnexpectedRedirect), err
    assert err.location == "http://elsewhere.invalid/v1/echo"
    assert "http://elsewhere.invalid/v1/echo" in str(err) and err.status == 307
    assert len(echo_server.requests) == 1 and err.attempts == 1


@pytest.mark.parametrize("how", ["content-length", "chunked", "corrupt-gzip"])
def test_a_cut_or_corrupt_body_is_transient_and_retried(pm, raw, how):
    def cut_first(conn):
        if conn.index > 0:
            conn.send(json_response(OK_BODY))
            return True
        if how == "content-length":
            conn.send(response_head(content_type="application/json", content_length="5000")
                      + b'{"echo": {')
        elif how == "chunked":
            conn.send(response_head(content_type="application/json",
                                    transfer_encoding="chunked") + b"a\r\n{\"echo\": {")
        else:
            junk = b"\x1f\x8b\x08\x00garbage-that-is-not-deflate" * 4
            conn.send(response_head(content_type="application/json", content_encoding="gzip",
                                    content_length=str(len(junk))) + junk)
        return False  # close the connection

    srv = raw(cut_first)
    with client_for(pm, srv.url) as c:
        res = outcome(c, "echo", {"n": 1}, deadline=20)
    assert not isinstance(res, Exception), res
    assert res.attempts == 2 and json.loads(res.text) == {"n": 1}


def test_a_body_cut_every_time_ends_in_connection_failed(pm, raw):
    def always_cut(conn):
        conn.send(response_head(content_type="application/json", content_length="5000") + b"{")
        return False

    srv = raw(always_cut)
    with client_for(pm, srv.url, retry=RetryPolicy(max_attempts=3, base_delay=0.01,
                                                   max_delay=0.02)) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=20)
    assert isinstance(err, ConnectionFailed), err
    assert err.attempts == 3 and len(srv.requests) == 3


# ------------------------------------------------------------------ retry-after
@pytest.mark.parametrize("value", ["999999", "1e999", "inf", "nan", "soon",
                                   "Wed, 21 Oct 2999 07:28:00 GMT", "-5"])
def test_retry_after_values_never_park_the_key_past_max_retry_after(pm, echo_server, value):
    """20.7: with max_retry_after=0.2, the key is usable again soon whatever the header
    says; a key parked for the header's 11 days would end the call in DeadlineExceeded."""
    echo_server.script(ServerResponse.json({"error": {"message": "slow down"}}, 429,
                                           headers={"retry-after": value}))
    retry = RetryPolicy(base_delay=0.01, max_delay=0.05, max_retry_after=0.2)
    with client_for(pm, echo_server.url, retry=retry) as c:
        res = outcome(c, "echo", {"n": 1}, deadline=8)
        assert not isinstance(res, Exception), res
        assert res.attempts == 2
    assert len(echo_server.requests) == 2


def test_rate_limited_every_time_ends_typed(pm, echo_server):
    echo_server.script(*[ServerResponse.json({"error": {"message": "slow down"}}, 429,
                                             headers={"retry-after": "999999"})] * 10)
    retry = RetryPolicy(base_delay=0.01, max_delay=0.05, max_retry_after=0.05, max_attempts=3)
    with client_for(pm, echo_server.url, retry=retry) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=10)
    assert isinstance(err, RateLimited) and err.attempts == 3, err


# ------------------------------------------------------------------ no key in the chain
def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


@pytest.mark.parametrize("failure", ["timeout", "refused"])
def test_network_errors_chain_no_requests_exception(pm, raw, failure):
    """20.5: the requests exception holds the sent headers (``Authorization``)."""
    if failure == "timeout":
        srv = raw(lambda conn: conn.pause(30))
        url = srv.url
    else:
        import socket

        s = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        s.close()
    with client_for(pm, url, read_timeout=0.3, retry=RetryPolicy(max_attempts=1)) as c:
        err = outcome(c, "echo", {"n": 1}, deadline=10)
    assert isinstance(err, (RequestTimeout, ConnectionFailed)), err
    chain = _chain(err)
    assert len(chain) == 1, [type(e).__name__ for e in chain]
    assert "test-key-1" not in repr(err.__dict__) + str(err)


def test_request_id_header_is_uuid_shaped(pm, echo_server):
    import uuid

    with client_for(pm, echo_server.url) as c:
        res = c.call("echo", "echo", {"n": 1})
    sent = echo_server.last.header("X-Request-ID")
    assert sent == res.request_id and uuid.UUID(sent).version == 4
    assert str(uuid.UUID(sent)) == sent

