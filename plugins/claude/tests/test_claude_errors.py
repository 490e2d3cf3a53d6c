"""The claude backend's errors, rate limits and keys over real HTTP."""

from __future__ import annotations

import pytest
import requests

from ipfs_accelerate_py import BackendConfig, Client
from ipfs_accelerate_py.errors import (
    AuthError,
    ConfigError,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTimeout,
    TransientError,
)
from ipfs_accelerate_py.plugins import list_plugins
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo
from ipfs_accelerate_claude.backend import ClaudeBackend
from ipfs_accelerate_claude.server import ClaudeServer

MODEL = "claude-sim-haiku"
PAYLOAD = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture()
def proto() -> ClaudeServer:
    return ClaudeServer(seed=3, context_window=50)


@pytest.fixture()
def srv(proto):
    server = LocalServer(proto)
    yield server
    server.close()


def make_client(srv, attempts: int = 1) -> Client:
    return testing.make_client("claude", srv.url, attempts=attempts, concurrency=2,
                               base_delay=0.01, max_delay=0.05)


@pytest.fixture()
def client(srv):
    c = make_client(srv)
    yield c
    c.close()


def anthropic_error(status: int, etype: str, message: str, headers=None) -> ServerResponse:
    return ServerResponse.json({"type": "error", "error": {"type": etype, "message": message},
                                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}, status,
                               headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy", **(headers or {})})


@pytest.mark.parametrize("status,etype,message,cls", [
    (400, "invalid_request_error", "messages: roles must alternate", InvalidRequest),
    (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", ContextTooLong),
    (401, "authentication_error", "invalid x-api-key", AuthError),
    (402, "billing_error", "Your credit balance is too low", AuthError),
    (403, "permission_error", "Your API key does not have permission to use the specified resource.", AuthError),
    (404, "not_found_error", "model: claude-nope", NotFound),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", InvalidRequest),
    (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", RateLimited),
    (500, "api_error", "Internal server error", TransientError),
    (504, "timeout_error", "Request timed out", RequestTimeout),
    (529, "overloaded_error", "Overloaded", TransientError),
])
def test_error_bodies_are_classified(srv, client, status, etype, message, cls):
    srv.script(anthropic_error(status, etype, message))
    with pytest.raises(cls) as info:
        client.call("claude", "messages", PAYLOAD)
    err = info.value
    assert type(err) is cls
    assert err.status == status and err.code == etype and err.message == message
    assert err.provider_request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
    assert "test-key-1" not in str(err) and "test-key-1" not in repr(err)


def test_request_id_falls_back_to_the_body(srv, client):
    srv.script(ServerResponse.json({"type": "error", "error": {"type": "api_error", "message": "x"},
                                    "request_id": "req_body_only"}, 500))
    with pytest.raises(TransientError) as info:
        client.call("claude", "messages", PAYLOAD)
    assert info.value.provider_request_id == "req_body_only"


def test_the_server_answers_prompt_too_long_itself(client):
    long = {**PAYLOAD, "messages": [{"role": "user", "content": "word " * 100}]}
    with pytest.raises(ContextTooLong) as info:
        client.call("claude", "messages", long)
    assert "prompt is too long" in info.value.message


def test_the_server_rejects_a_missing_max_tokens_and_a_bad_role(srv):
    h = {"x-api-key": "test-key-1", "anthropic-version": "2023-06-01"}
    r = requests.post(srv.url + "/v1/messages", json={"model": MODEL, "messages": []}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["message"] == "max_tokens: Field required"
    r = requests.post(srv.url + "/v1/messages", headers=h,
                      json={**PAYLOAD, "messages": [{"role": "system", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = requests.post(srv.url + "/v1/messages", json=PAYLOAD, headers={"x-api-key": "test-key-1"})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = requests.post(srv.url + "/v1/messages", json=PAYLOAD, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_overloaded_529_is_retried_then_succeeds(srv, proto):
    srv.script(proto.overloaded)
    with make_client(srv, attempts=3) as c:
        res = c.call("claude", "messages", PAYLOAD)
    assert res.text and res.attempts == 2 and len(srv.requests) == 2


def test_auth_errors_are_not_retried(srv):
    srv.script(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    with make_client(srv, attempts=4) as c, pytest.raises(AuthError):
        c.call("claude", "messages", PAYLOAD)
    assert len(srv.requests) == 1


def test_429_with_anthropic_headers_is_retried(srv, proto):
    info = RateLimitInfo(limit_requests=50, remaining_requests=3, reset_requests=0.0,
                         limit_tokens=40000, remaining_tokens=39000, reset_tokens=0.0, retry_after=0)
    srv.script(lambda req: proto.rate_limited(req, info))
    with make_client(srv, attempts=3) as c:
        res = c.call("claude", "messages", PAYLOAD)
    assert res.text and res.attempts == 2


def test_rate_limit_headers_are_read(srv, proto):
    info = RateLimitInfo(limit_requests=50, remaining_requests=0, reset_requests=20,
                         limit_tokens=40000, remaining_tokens=100, reset_tokens=30, retry_after=7)
    srv.script(lambda req: proto.rate_limited(req, info))
    resp = requests.post(srv.url + "/v1/messages", json=PAYLOAD,
                         headers={"x-api-key": "test-key-1", "anthropic-version": "2023-06-01"})
    assert resp.status_code == 429
    assert resp.headers["anthropic-ratelimit-requests-limit"] == "50"
    assert resp.headers["retry-after"] == "7"
    backend = ClaudeBackend(BackendConfig(name="claude", base_url=srv.url))
    parsed = backend.rate_limit_info(resp)
    assert (parsed.limit_requests, parsed.remaining_requests) == (50, 0)
    assert (parsed.limit_tokens, parsed.remaining_tokens) == (40000, 100)
    assert 0 < parsed.reset_requests <= 21 and 0 < parsed.reset_tokens <= 31
    assert parsed.retry_after == 7
    err = backend.classify_error(None, resp)
    assert isinstance(err, RateLimited) and err.retry_after == 7 and err.code == "rate_limit_error"
    ok = requests.post(srv.url + "/v1/messages", json=PAYLOAD,
                       headers={"x-api-key": "test-key-1", "anthropic-version": "2023-06-01"})
    assert backend.rate_limit_info(ok) is None  # no headers, nothing learned


@pytest.mark.parametrize("response,code", [
    (ServerResponse.text("{\"id\": \"msg_1\", \"content\": [", 200, "application/json"), "malformed_response"),
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), None),
    (ServerResponse.text("", 200, "application/json"), "malformed_response"),
    (ServerResponse.json({"unexpected": True}), "malformed_response"),
])
def test_bad_bodies_are_transient_errors(srv, client, response, code):
    srv.script(response)
    with pytest.raises(TransientError) as info:
        client.call("claude", "messages", PAYLOAD)
    assert info.value.code == code


def test_html_error_page_message_is_short(srv, client):
    srv.script(ServerResponse.text("<html>" + "x" * 5000 + "</html>", 503, "text/html"))
    with pytest.raises(TransientError) as info:
        client.call("claude", "messages", PAYLOAD)
    assert "HTML" in info.value.message and len(info.value.message) < 100


# ---------------------------------------------------------------------------- keys
def test_keys_from_metadata_and_environment():
    assert ClaudeBackend.keys_from({"claude_api_key": "test-key-1"}, {})[0].reveal() == "test-key-1"
    assert ClaudeBackend.keys_from({"anthropic_api_key": "test-key-2"}, {})[0].reveal() == "test-key-2"
    assert ClaudeBackend.keys_from({"api_key": "test-key-3"}, {})[0].reveal() == "test-key-3"
    assert ClaudeBackend.keys_from({}, {"ANTHROPIC_API_KEY": "test-key-4"})[0].reveal() == "test-key-4"
    assert ClaudeBackend.keys_from({}, {"CLAUDE_API_KEY": "test-key-5"})[0].reveal() == "test-key-5"
    assert ClaudeBackend.keys_from({}, {}) == []
    key = ClaudeBackend.keys_from({"claude_api_key": "test-key-1"}, {})[0]
    assert "test-key-1" not in repr(key)


def test_a_missing_key_is_a_clear_error_never_a_placeholder(monkeypatch, srv):
    for name in ClaudeBackend.env_keys:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        Client([BackendConfig(name="claude", base_url=srv.url)])
    assert "ANTHROPIC_API_KEY" in str(info.value)
    assert srv.requests == []


def test_key_from_environment_is_sent(monkeypatch, srv):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-9")
    with Client([BackendConfig(name="claude", base_url=srv.url)]) as c:
        c.call("claude", "messages", PAYLOAD)
    assert srv.last.header("x-api-key") == "test-key-9"


def test_the_plugin_is_found_through_entry_points():
    names = str(list_plugins())
    assert "claude" in names


def test_server_key_of_reads_x_api_key(srv, proto):
    requests.get(srv.url + "/v1/models", headers={"x-api-key": "test-key-7",
                                                  "anthropic-version": "2023-06-01"})
    assert proto.key_of(srv.last) == "test-key-7"
