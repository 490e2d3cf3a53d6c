"""The gemini backend's errors, 429s and keys over real HTTP."""

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
from ipfs_accelerate_gemini.backend import GeminiBackend
from ipfs_accelerate_gemini.server import GeminiServer

MODEL = "gemini-sim-flash"
PAYLOAD = {"model": MODEL, "contents": [{"role": "user", "parts": [{"text": "hello"}]}]}


@pytest.fixture()
def proto() -> GeminiServer:
    return GeminiServer(seed=2, input_token_limit=40, invalid_keys=["test-key-bad"])


@pytest.fixture()
def srv(proto):
    server = LocalServer(proto)
    yield server
    server.close()


def make_client(srv, attempts: int = 1, keys=("test-key-1",)) -> Client:
    return testing.make_client("gemini", srv.url, keys=keys, attempts=attempts, concurrency=2,
                               base_delay=0.01, max_delay=0.05)


@pytest.fixture()
def client(srv):
    c = make_client(srv)
    yield c
    c.close()


def google_error(code: int, status: str, message: str, details=None) -> ServerResponse:
    err = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return ServerResponse.json({"error": err}, code)


@pytest.mark.parametrize("code,status,message,cls", [
    (400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n", InvalidRequest),
    (400, "INVALID_ARGUMENT", "The input token count (1048577) exceeds the maximum number of tokens "
                              "allowed (1048576).", ContextTooLong),
    (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", InvalidRequest),
    (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", AuthError),
    (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", AuthError),
    (404, "NOT_FOUND", "models/nope is not found for API version v1beta", NotFound),
    (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", RateLimited),
    (500, "INTERNAL", "An internal error has occurred.", TransientError),
    (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", TransientError),
    (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", RequestTimeout),
])
def test_google_error_bodies_are_classified(srv, client, code, status, message, cls):
    srv.script(google_error(code, status, message))
    with pytest.raises(cls) as info:
        client.call("gemini", "generate", PAYLOAD)
    err = info.value
    assert type(err) is cls
    assert (err.status, err.code, err.message) == (code, status, message)
    assert "test-key-1" not in str(err) and "test-key-1" not in repr(err)


def test_resource_exhausted_carries_the_retry_delay(srv, proto):
    srv.script(lambda req: proto.rate_limited(req, RateLimitInfo(retry_after=13)))
    resp = requests.post(srv.url + f"/v1beta/models/{MODEL}:generateContent", json=PAYLOAD,
                         headers={"x-goog-api-key": "test-key-1"})
    assert resp.status_code == 429 and "retry-after" not in resp.headers
    details = resp.json()["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"} in details
    backend = GeminiBackend(BackendConfig(name="gemini", base_url=srv.url))
    err = backend.classify_error(None, resp)
    assert isinstance(err, RateLimited) and err.retry_after == 13 and err.code == "RESOURCE_EXHAUSTED"
    assert backend.rate_limit_info(resp).retry_after == 13


def test_retry_delay_in_fractional_seconds():
    from ipfs_accelerate_gemini.errors import retry_delay

    assert retry_delay([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                         "retryDelay": "0.250s"}]) == 0.25
    assert retry_delay([{"@type": "type.googleapis.com/google.rpc.QuotaFailure"}]) is None


def test_a_429_is_retried_after_its_delay(srv, proto):
    srv.script(lambda req: proto.rate_limited(req, RateLimitInfo(retry_after=0)))
    with make_client(srv, attempts=3) as c:
        res = c.call("gemini", "generate", PAYLOAD)
    assert res.text and res.attempts == 2


def test_unavailable_is_retried(srv, proto):
    srv.script(proto.unavailable)
    with make_client(srv, attempts=3) as c:
        res = c.call("gemini", "generate", PAYLOAD)
    assert res.attempts == 2 and len(srv.requests) == 2


def test_an_invalid_key_is_an_auth_error_not_a_bad_request(srv):
    with make_client(srv, attempts=3, keys=["test-key-bad"]) as c, pytest.raises(AuthError) as info:
        c.call("gemini", "generate", PAYLOAD)
    assert info.value.status == 400 and "API key not valid" in info.value.message
    assert len(srv.requests) == 1


def test_the_server_refuses_too_long_input_itself(client):
    long = {"model": MODEL, "contents": [{"role": "user", "parts": [{"text": "word " * 100}]}]}
    with pytest.raises(ContextTooLong) as info:
        client.call("gemini", "generate", long)
    assert "exceeds the maximum number of tokens" in info.value.message


def test_the_server_needs_a_key(srv):
    r = requests.post(srv.url + f"/v1beta/models/{MODEL}:generateContent", json=PAYLOAD)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("response,code", [
    (ServerResponse.text("{\"candidates\": [", 200, "application/json"), "malformed_response"),
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), None),
    (ServerResponse.text("", 200, "application/json"), "malformed_response"),
    (ServerResponse.json({"candidates": []}), "no_candidates"),
])
def test_bad_bodies_are_transient_errors(srv, client, response, code):
    srv.script(response)
    with pytest.raises(TransientError) as info:
        client.call("gemini", "generate", PAYLOAD)
    assert info.value.code == code


def test_html_error_page_message_is_short(srv, client):
    srv.script(ServerResponse.text("<html>" + "x" * 5000 + "</html>", 503, "text/html"))
    with pytest.raises(TransientError) as info:
        client.call("gemini", "generate", PAYLOAD)
    assert "HTML" in info.value.message and len(info.value.message) < 100


# ---------------------------------------------------------------------------- keys
def test_keys_from_metadata_and_environment():
    assert GeminiBackend.keys_from({"gemini_api_key": "test-key-1"}, {})[0].reveal() == "test-key-1"
    assert GeminiBackend.keys_from({"google_api_key": "test-key-2"}, {})[0].reveal() == "test-key-2"
    assert GeminiBackend.keys_from({}, {"GEMINI_API_KEY": "test-key-3"})[0].reveal() == "test-key-3"
    assert GeminiBackend.keys_from({}, {"GOOGLE_API_KEY": "test-key-4"})[0].reveal() == "test-key-4"
    assert GeminiBackend.keys_from({}, {}) == []


def test_a_missing_key_is_a_clear_error(monkeypatch, srv):
    for name in GeminiBackend.env_keys:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        Client([BackendConfig(name="gemini", base_url=srv.url)])
    assert "GEMINI_API_KEY" in str(info.value)


def test_key_from_environment_goes_in_the_header_never_the_url(monkeypatch, srv):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "test-key-8")
    with Client([BackendConfig(name="gemini", base_url=srv.url)]) as c:
        c.call("gemini", "generate", PAYLOAD)
        c.stream("gemini", "chat", PAYLOAD).collect()
        c.call("gemini", "models", {})
    for req in srv.requests:
        assert req.header("x-goog-api-key") == "test-key-8"
        assert "key" not in req.query


def test_the_plugin_is_found_through_entry_points():
    assert "gemini" in str(list_plugins())


def test_server_key_of_reads_the_header_or_the_query(srv, proto):
    requests.get(srv.url + "/v1beta/models", headers={"x-goog-api-key": "test-key-5"})
    assert proto.key_of(srv.last) == "test-key-5"
    requests.get(srv.url + "/v1beta/models?key=test-key-6")
    assert proto.key_of(srv.last) == "test-key-6"
