"""The Groq backend over real HTTP, through the pipeline, against GroqServer."""

from __future__ import annotations

import json
import time

import pytest
import requests
from ipfs_accelerate_groq.backend import GroqBackend
from ipfs_accelerate_groq.server import EXAMPLE_LIMITS, GroqServer

from ipfs_accelerate_py.client import Client
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import (
    AuthError,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    StreamError,
    TransientError,
)
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import ToolCall, Usage
from ipfs_accelerate_py.server import ServerRequest, ServerResponse, iter_chunks
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

MODEL = "llama-3.1-8b-instant"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Explain fast inference"}]}



def make_client(srv: LocalServer, keys=("test-key-1",), base_path="/openai/v1") -> Client:
    return testing.make_client(GroqBackend, srv.url + base_path, keys=keys)


@pytest.fixture
def srv():
    s = LocalServer(GroqServer(limits=EXAMPLE_LIMITS))
    yield s
    s.close()


@pytest.fixture
def client(srv):
    c = make_client(srv)
    yield c
    c.close(wait=False)


def stream_answer(body: dict) -> list[bytes]:
    resp = GroqServer().handle(ServerRequest("POST", "/openai/v1/chat/completions",
                                             headers={"authorization": "Bearer test-key-1"},
                                             body=json.dumps({**body, "stream": True}).encode()))
    return list(resp.body)


def test_chat_exact_request_and_result(client, srv):
    payload = {**CHAT, "temperature": 0.5, "seed": 3, "response_format": {"type": "json_object"},
               "max_completion_tokens": 64}
    res = client.call("groq", "chat", payload)
    sent = srv.last
    assert (sent.method, sent.path) == ("POST", "/openai/v1/chat/completions")
    assert sent.header("authorization") == "Bearer test-key-1"
    assert sent.header("content-type") == "application/json"
    assert sent.header("x-request-id") is None and sent.header("x-client-request-id") is None
    assert sent.json() == payload
    assert res.text and res.finish_reason == "stop" and res.model == MODEL
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens
    assert res.provider_request_id.startswith("req_") and res.raw["x_groq"]["id"].startswith("req_")


def test_base_url_with_a_path_is_used_as_given(srv):
    # A self-hosted OpenAI-compatible server (llama.cpp, a proxy) serves /v1, not /openai/v1.
    c = make_client(srv, base_path="/proxy/v1")
    try:
        with pytest.raises(NotFound):
            c.call("groq", "models", {})
        assert srv.last.path == "/proxy/v1/models"
    finally:
        c.close(wait=False)
    for given in ("http://127.0.0.1:8080/v1", "https://gateway.example/groq/openai/v1",
                  "http://127.0.0.1:8080"):
        assert GroqBackend(BackendConfig(name="groq", base_url=given)).base_url == given


def test_sdk_style_groq_host_gets_the_openai_path():
    assert GroqBackend().base_url == "https://api.groq.com/openai/v1"
    for bare in ("https://api.groq.com", "https://api.groq.com/"):
        assert GroqBackend(BackendConfig(name="groq", base_url=bare)).base_url == \
            "https://api.groq.com/openai/v1"


def test_a_base_url_without_the_version_prefix_gives_a_404_naming_the_url(srv):
    c = make_client(srv, base_path="")
    try:
        with pytest.raises(NotFound) as info:
            c.call("groq", "chat", CHAT)
    finally:
        c.close(wait=False)
    assert srv.last.path == "/chat/completions" and len(srv.requests) == 1
    msg = str(info.value)
    assert f"HTTP 404 from POST {srv.url}/chat/completions" in msg
    assert f"live under {srv.url}/openai/v1" in msg


def test_tool_calls(client):
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    res = client.call("groq", "chat", {**CHAT, "tools": tools, "tool_choice": "required"})
    assert res.finish_reason == "tool_calls" and res.tool_calls[0].name == "search"
    streamed = client.stream("groq", "chat", {**CHAT, "tools": tools, "tool_choice": "required"}).collect()
    assert streamed.tool_calls == res.tool_calls


def test_stream_usage_comes_from_x_groq(client, srv):
    whole = client.call("groq", "chat", CHAT)
    stream = client.stream("groq", "chat", CHAT)
    chunks = list(stream)
    sent = srv.last.json()
    assert sent["stream"] is True and "stream_options" not in sent
    assert len([c for c in chunks if c.text]) >= 3
    assert stream.text == whole.text and stream.finish_reason == "stop"
    assert stream.usage == whole.usage  # read from x_groq.usage on the last chunk
    assert chunks[-1].raw["x_groq"]["usage"]["total_tokens"] == whole.usage.total_tokens


def test_stream_options_pass_through(client, srv):
    res = client.stream("groq", "chat", {**CHAT, "stream_options": {"include_usage": True}}).collect()
    assert srv.last.json()["stream_options"] == {"include_usage": True}
    assert res.usage.total_tokens > 0


def test_stream_cut_error_event_and_truncation(client, srv):
    whole = client.stream("groq", "chat", CHAT).collect()
    srv.script(ServerResponse.stream(iter_chunks(stream_answer(CHAT), cut_after=3)))
    with pytest.raises(StreamError) as info:
        client.stream("groq", "chat", CHAT).collect()
    assert info.value.partial_text and whole.text.startswith(info.value.partial_text)

    frames = stream_answer(CHAT)
    srv.script(ServerResponse.stream(frames[:3] + ocs.sse_body(
        [{"error": {"message": "Service Unavailable", "type": "internal_server_error"}}], done=False)))
    with pytest.raises(StreamError) as info:
        client.stream("groq", "chat", CHAT).collect()
    assert info.value.partial_text and isinstance(info.value.cause_error, TransientError)

    srv.script(ServerResponse.stream(frames[:-1]))  # everything but data: [DONE]
    with pytest.raises(StreamError, match="truncated"):
        client.stream("groq", "chat", CHAT).collect()


def test_models_and_model(client, srv):
    res = client.call("groq", "models", {})
    assert (srv.last.method, srv.last.path) == ("GET", "/openai/v1/models")
    assert [m["id"] for m in res.data] == ["llama-3.1-8b-instant", "llama-3.3-70b-versatile"]
    assert res.data[0]["context_window"] == 8192 and res.data[0]["active"] is True
    one = client.call("groq", "model", {"model": MODEL})
    assert srv.last.path == f"/openai/v1/models/{MODEL}" and one.model == MODEL
    with pytest.raises(NotFound):
        client.call("groq", "model", {"model": "meta-llama/unknown"})
    assert srv.last.path == "/openai/v1/models/meta-llama/unknown"


def test_rate_limit_headers_are_per_day_requests_and_per_minute_tokens(srv):
    resp = requests.get(srv.url + "/openai/v1/models", headers={"Authorization": "Bearer test-key-1"},
                        timeout=5)
    assert resp.headers["x-ratelimit-limit-requests"] == "14400"
    assert resp.headers["x-ratelimit-reset-requests"] == "6s"
    info = GroqBackend().rate_limit_info(resp)
    assert info.limit_requests == 14400 and info.request_window == 86400
    assert info.limit_tokens == 6000 and info.token_window == 60



def test_429_like_groq_is_rate_limited_and_retried(client, srv):
    info = RateLimitInfo(limit_requests=14400, remaining_requests=14000, reset_requests=1.0,
                         limit_tokens=6000, remaining_tokens=0, reset_tokens=0.01, retry_after=0.01)
    srv.script(lambda req: srv.protocol.rate_limited(req, info))
    res = client.call("groq", "chat", CHAT)
    assert res.attempts == 2
    first = srv.requests[0]
    raw = srv.protocol.rate_limited(first, info)
    body = json.loads(raw.body)["error"]
    assert body["type"] == "tokens" and body["code"] == "rate_limit_exceeded"
    assert "tokens per minute (TPM): Limit 6000" in body["message"]
    assert raw.headers["retry-after"] == "1" and "retry-after-ms" not in raw.headers


def test_429_classification_and_retry_after(srv):
    info = RateLimitInfo(limit_requests=14400, remaining_requests=0, reset_requests=7.0,
                         retry_after=7.0)
    srv.script(lambda req: srv.protocol.rate_limited(req, info))
    resp = requests.post(srv.url + "/openai/v1/chat/completions", json=CHAT,
                         headers={"Authorization": "Bearer test-key-1"}, timeout=5)
    err = GroqBackend().classify_error(None, resp)
    assert isinstance(err, RateLimited) and err.retry_after == 7.0 and err.provider_request_id.startswith("req_")
    assert "requests per day (RPD)" in err.message


def test_flex_capacity_498_is_rate_limited(client, srv):
    srv.script(ServerResponse.json(ocs.render_error("Flex tier capacity exceeded. Please try again later.",
                                                   "capacity_exceeded"), 498))
    res = client.call("groq", "chat", CHAT)
    assert res.attempts == 2
    assert client.stats().backends["groq"]["rate_limited"] == 1


def test_errors_not_retried(client, srv):
    with pytest.raises(InvalidRequest) as info:
        client.call("groq", "chat", {**CHAT, "n": 2})
    assert info.value.status == 400 and "'n'" in info.value.message
    with pytest.raises(NotFound) as info:
        client.call("groq", "chat", {**CHAT, "model": "no-such-model"})
    assert info.value.code == "model_not_found"
    with pytest.raises(ContextTooLong):
        client.call("groq", "chat", {**CHAT, "messages": [{"role": "user", "content": "x" * 40000}]})
    assert len(srv.requests) == 3


def test_bad_key(srv):
    bad = LocalServer(GroqServer(bad_keys=["test-key-1"]))
    c = make_client(bad)
    try:
        with pytest.raises(AuthError) as info:
            c.call("groq", "chat", CHAT)
        assert info.value.code == "invalid_api_key" and "test-key-1" not in repr(info.value)
        assert len(bad.requests) == 1
    finally:
        c.close(wait=False)
        bad.close()


@pytest.mark.parametrize("answer", [
    ServerResponse.text("<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>", 502, "text/html"),
    ServerResponse(200, {"Content-Type": "application/json"}, b""),
    ServerResponse(200, {"Content-Type": "application/json"}, b"{\"id\":"),
    ServerResponse.json(ocs.render_error("Service Unavailable", "internal_server_error"), 503),
])
def test_bad_answers_are_retried(client, srv, answer):
    srv.script(answer)
    assert client.call("groq", "chat", CHAT).attempts == 2


def test_keys_from_metadata_and_env():
    assert [k.reveal() for k in GroqBackend.keys_from({"groq_api_key": "test-key-1"}, environ={})] == ["test-key-1"]
    assert [k.reveal() for k in GroqBackend.keys_from({}, environ={"GROQ_API_KEY": "test-key-2"})] == ["test-key-2"]
    assert GroqBackend.keys_from({}, environ={}) == []


def test_real_groq_body_shapes(client, srv):
    body = {"id": "chatcmpl-f51b2cd2", "object": "chat.completion", "created": 1730241104,
            "model": MODEL, "choices": [{"index": 0, "message": {
                "role": "assistant", "tool_calls": [{"id": "call_d5wg", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"location\": \"New York, NY\"}"}}]},
                "logprobs": None, "finish_reason": "tool_calls"}],
            "usage": {"queue_time": 0.018, "prompt_tokens": 224, "prompt_time": 0.019,
                      "completion_tokens": 18, "completion_time": 0.065, "total_tokens": 242,
                      "total_time": 0.084},
            "system_fingerprint": "fp_179b0f92c9", "x_groq": {"id": "req_01jbd6g2qdfw2adyrt2az8hz4w"}}
    srv.script(ServerResponse.json(body))
    res = client.call("groq", "chat", CHAT)
    assert res.tool_calls == (ToolCall("call_d5wg", "get_weather", "{\"location\": \"New York, NY\"}"),)
    assert res.usage == Usage(224, 18, 242) and res.text == ""


def test_request_objects_are_checked(client, srv):
    with pytest.raises(InvalidRequest):
        client.call("groq", "chat", {"model": MODEL})
    with pytest.raises(InvalidRequest):
        client.call("groq", "embeddings", {"model": MODEL, "input": "x"})
    assert srv.requests == []
    assert Request("chat", CHAT).payload == CHAT


def test_per_minute_quota_is_restated_per_day():
    """The simulator enforces per-minute quotas; Groq's headers state them per day."""
    headers = GroqServer().rate_limit_headers(RateLimitInfo(limit_requests=60, remaining_requests=10,
                                                            reset_requests=0.5))
    assert headers["x-ratelimit-limit-requests"] == "86400"
    assert headers["x-ratelimit-remaining-requests"] == "10"
    info = GroqBackend().rate_limit_info(requests.models.Response())  # no headers: nothing said
    assert info is None
    resp = requests.models.Response()
    resp.headers.update(headers)
    info = GroqBackend().rate_limit_info(resp)
    assert info.limit_requests / info.request_window == pytest.approx(1.0)  # one request a second


def test_headers_are_read_as_said_even_when_exhausted():
    """The backend reports what the server said; the limiter derives the rest (no
    rewritten reset when remaining is 0)."""
    resp = requests.models.Response()
    resp.headers.update({"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "0",
                         "x-ratelimit-reset-requests": "23h59m54s"})
    info = GroqBackend().rate_limit_info(resp)
    assert info.request_window == 86400.0
    assert info.reset_requests == pytest.approx(86394.0)
    assert info.remaining_requests == 0


def test_limiter_reads_groq_headers_over_real_http():
    """Against the Groq protocol server (a 4 req/s bucket of 2, restated per day): the
    limiter learns 4 req/s (and the daily bucket) from the headers as sent, and a key whose
    daily quota says remaining 0 waits one refill step (1/4 s), not the day-long reset."""
    from ipfs_accelerate_py.limiter import KeyLimiter
    from ipfs_accelerate_py.wire.ratelimit import parse_duration
    from ipfs_accelerate_sim import SimConfig, Simulator

    backend = GroqBackend()
    with Simulator(SimConfig(rps=4, burst=2, backends=["groq"]),
                   servers={"groq": GroqServer()}) as sim:
        url = sim.base_url("groq") + "/openai/v1/chat/completions"
        limiter = KeyLimiter(0.0)
        t0 = time.monotonic()
        exhausted = None
        with requests.Session() as http:
            for _ in range(12):
                sent = time.monotonic() - t0
                resp = http.post(url, json=CHAT, timeout=10,
                                 headers={"Authorization": "Bearer test-key-1"})
                now = time.monotonic() - t0
                info = backend.rate_limit_info(resp)
                assert info is not None
                # as said: the reset is the header's, never rewritten
                assert info.reset_requests == pytest.approx(
                    parse_duration(resp.headers["x-ratelimit-reset-requests"]))
                limiter.observe(info, now, sent_at=sent)
                if resp.status_code == 429:
                    limiter.observe_429(info.retry_after, now)
                elif info.remaining_requests == 0 and exhausted is None:
                    exhausted = (info, now)
    assert exhausted is not None, "the bucket of 2 was never exhausted"
    info, now = exhausted
    assert info.reset_requests > 3600  # the daily bucket's time to full, as sent
    req = limiter.snapshot(now)["requests"]
    assert req["rate_per_second"] == pytest.approx(4.0, rel=0.02)
    assert req["capacity"] == info.limit_requests  # the daily bucket, as stated
    fresh = KeyLimiter(0.0)
    fresh.observe(info, 1.0, sent_at=1.0)
    assert fresh.wait_time(0, 1.0) <= 0.25 + 1e-6  # one refill step, not a day


def test_default_server_sends_no_fixed_rate_limit_headers():
    resp = GroqServer().handle(ServerRequest("GET", "/openai/v1/models",
                                             headers={"authorization": "Bearer test-key-1"}))
    assert resp.status == 200 and not any(k.startswith("x-ratelimit") for k in resp.headers)
