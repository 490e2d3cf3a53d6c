"""The test kit's in-memory transport: a client's requests reach a protocol fake through
the whole ``requests`` stack with no socket at all, and behave as they do over HTTP."""

from __future__ import annotations

import socket

import pytest
from echo_backend import EchoBackend, EchoServer

from ipfs_accelerate_py.errors import AuthError, StreamError, TransientError
from ipfs_accelerate_py.server import ServerResponse, iter_chunks
from ipfs_accelerate_sim.testing import LocalServer, MemoryServer, make_client


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(self: socket.socket, *args: object) -> None:
        raise AssertionError("a socket was connected")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def mem():
    with MemoryServer(EchoServer()) as server:
        yield server


def test_a_call_round_trips_without_a_socket(mem, no_sockets):
    with make_client(EchoBackend, mem.url, transport=mem.transport) as client:
        res = client.call("echo", "echo", {"n": 7})
    assert res.raw["echo"] == {"n": 7}
    assert res.raw["key"] == "test-key-1"  # the Authorization header reached the fake
    assert res.provider_request_id == "srv-7"  # and the fake's headers reached the parser
    assert [(r.method, r.path) for r in mem.requests] == [("POST", "/echo")]
    assert mem.last.header("content-type") == "application/json"


def test_query_and_body_arrive_as_over_http():
    # The same request through both hosts is the same ServerRequest.
    seen = []
    with MemoryServer(lambda req: (seen.append(req), ServerResponse.json({}))[1]) as server:
        server.transport.session.post(server.url + "/p/a%20b?x=1&x=2&y=", json={"k": "v"},
                                      timeout=5)
    with LocalServer(lambda req: (seen.append(req), ServerResponse.json({}))[1]) as server:
        import requests

        requests.Session().post(server.url + "/p/a%20b?x=1&x=2&y=", json={"k": "v"}, timeout=5)
    mem_req, http_req = seen
    assert (mem_req.method, mem_req.path, dict(mem_req.query), mem_req.json()) == \
           (http_req.method, http_req.path, dict(http_req.query), http_req.json())
    assert dict(mem_req.query) == {"x": ["1", "2"], "y": [""]}


def test_scripted_answers_come_first_then_retries_reach_the_protocol(mem, no_sockets):
    mem.script(ServerResponse.json({"error": {"message": "busy"}}, 503))
    with make_client(EchoBackend, mem.url, transport=mem.transport) as client:
        res = client.call("echo", "echo", {"n": 1})
    assert res.attempts == 2 and len(mem.requests) == 2


def test_an_auth_error_is_classified(mem, no_sockets):
    mem.script(ServerResponse.json({"error": {"message": "bad key"}}, 401))
    with make_client(EchoBackend, mem.url, transport=mem.transport) as client:
        with pytest.raises(AuthError):
            client.call("echo", "echo", {"n": 1})
    assert len(mem.requests) == 1


def test_a_stream_arrives_in_pieces(mem, no_sockets):
    words = ["alpha", "beta", "gamma", "delta"]
    with make_client(EchoBackend, mem.url, transport=mem.transport) as client:
        chunks = [c.text for c in client.stream("echo", "stream", {"words": words})]
    assert chunks == words  # one chunk per SSE event, in order


def test_a_cut_stream_is_a_stream_error_with_the_partial_text(mem, no_sockets):
    def cut(req):
        whole = EchoServer().handle(req)
        return ServerResponse(whole.status, dict(whole.headers), iter_chunks(whole.body, cut_after=2))

    words = ["alpha", "beta", "gamma", "delta"]
    with make_client(EchoBackend, mem.url, transport=mem.transport) as client:
        whole = client.stream("echo", "stream", {"words": words}).collect().text
        mem.script(cut)
        with pytest.raises(StreamError) as info:
            for _ in client.stream("echo", "stream", {"words": words}):
                pass
    assert info.value.partial_text and whole.startswith(info.value.partial_text)
    assert len(info.value.partial_text) < len(whole)


def test_a_bug_in_the_fake_is_a_500_not_a_hang(no_sockets):
    def broken(req):
        raise RuntimeError("fake bug")

    with MemoryServer(broken) as server:
        with make_client(EchoBackend, server.url, transport=server.transport, attempts=2) as client:
            with pytest.raises(TransientError) as info:
                client.call("echo", "echo", {"n": 1})
    assert info.value.status == 500
    assert len(server.requests) == 2  # a 5xx is transient: retried once, then given up


def test_make_client_by_name_uses_the_installed_plugins(no_sockets):
    from ipfs_accelerate_py.plugins import get_plugin_manager
    from ipfs_accelerate_py.results import Result

    with MemoryServer(get_plugin_manager().protocol_server("openai")()) as server:
        with make_client("openai", server.url + "/v1", transport=server.transport) as client:
            res = client.call("openai", "chat", {"model": "gpt-4o-mini",
                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert isinstance(res, Result) and res.text
    assert server.last.path == "/v1/chat/completions"
