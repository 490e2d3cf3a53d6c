"""The OpenAI backend over real HTTP, through the pipeline, against OpenAIServer."""

from __future__ import annotations

import json
from concurrent.futures import wait

import pytest
import requests
from ipfs_accelerate_openai.backend import OpenAIBackend
from ipfs_accelerate_openai.server import EXAMPLE_LIMITS, OpenAIServer

from ipfs_accelerate_py.client import Client
from ipfs_accelerate_py.config import BackendConfig, ClientConfig, RetryPolicy
from ipfs_accelerate_py.errors import (
    CountMismatch,
    AuthError,
    ContentFiltered,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    StreamError,
    TransientError,
)
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result, ToolCall, Usage
from ipfs_accelerate_py.server import ServerRequest, ServerResponse, iter_chunks
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
CHAT = {"model": "gpt-4o-mini", "messages": MSGS}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]



def make_client(srv: LocalServer, keys=("test-key-1",), options=None, batch_window=0.005,
                concurrency=4, attempts=4) -> Client:
    return testing.make_client(OpenAIBackend, srv.url + "/v1", keys=keys, attempts=attempts,
                               concurrency=concurrency, options=options or {},
                               batch_window=batch_window)


@pytest.fixture
def srv():
    s = LocalServer(OpenAIServer(limits=EXAMPLE_LIMITS))
    yield s
    s.close()


@pytest.fixture
def client(srv):
    c = make_client(srv)
    yield c
    c.close(wait=False)


def proto_answer(body: dict, path: str = "/v1/chat/completions") -> ServerResponse:
    """What the protocol server itself answers to ``body`` (to build cut/edited streams)."""
    return OpenAIServer().handle(ServerRequest("POST", path, headers={"authorization": "Bearer test-key-1"},
                                               body=json.dumps(body).encode()))


def sse(*objs, done=True) -> ServerResponse:
    return ServerResponse.stream(ocs.sse_body(objs, done=done))


# ----------------------------------------------------------------------- chat
def test_chat_exact_request_and_result(client, srv):
    payload = {**CHAT, "tools": TOOLS, "tool_choice": "auto", "seed": 7, "n": 1, "logprobs": True,
               "top_logprobs": 2, "response_format": {"type": "json_object"}, "temperature": 0.2}
    req = Request("chat", payload, backend="openai")
    res = client.submit(req).result(10)
    sent = srv.last
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.header("authorization") == "Bearer test-key-1"
    assert sent.header("content-type") == "application/json"
    assert sent.header("x-client-request-id") == req.request_id
    assert sent.header("openai-organization") is None and sent.header("openai-project") is None
    assert sent.json() == payload  # everything passed through untouched
    assert isinstance(res, Result) and res.text and res.finish_reason == "stop"
    assert res.model == "gpt-4o-mini" and res.backend == "openai" and res.attempts == 1
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens > 0
    assert res.provider_request_id.startswith("req_")  # the provider's x-request-id
    assert res.data[0]["logprobs"]["content"]
    assert res.raw["system_fingerprint"] == "fp_simulated"


def test_chat_stream_flag_in_payload_is_dropped_for_a_plain_call(client, srv):
    res = client.call("openai", "chat", {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert res.text
    assert "stream" not in srv.last.json() and "stream_options" not in srv.last.json()


def test_chat_tool_call_and_n(client, srv):
    res = client.call("openai", "chat", {**CHAT, "tools": TOOLS, "tool_choice": "required"})
    assert res.finish_reason == "tool_calls" and res.text == ""
    (call,) = res.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert "query" in json.loads(call.arguments)
    res = client.call("openai", "chat", {**CHAT, "n": 3})
    assert [c["index"] for c in res.data] == [0, 1, 2]
    assert res.text == res.data[0]["text"]


def test_organization_and_project_headers(srv, monkeypatch):
    c = make_client(srv, options={"organization": "org-123", "project": "proj_456"})
    try:
        c.call("openai", "models", {})
        assert srv.last.header("openai-organization") == "org-123"
        assert srv.last.header("openai-project") == "proj_456"
    finally:
        c.close(wait=False)
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT", "proj_env")
    c = make_client(srv)
    try:
        c.call("openai", "models", {})
        assert srv.last.header("openai-organization") == "org-env"
        assert srv.last.header("openai-project") == "proj_env"
    finally:
        c.close(wait=False)
    assert OpenAIBackend.options_from({"openai_organization": "o", "openai_project": "p"}) == \
        {"organization": "o", "project": "p"}


def test_request_id_header_can_be_turned_off(srv):
    c = make_client(srv, options={"send_request_id": False})
    try:
        c.call("openai", "models", {})
        assert srv.last.header("x-client-request-id") is None
    finally:
        c.close(wait=False)


def test_invalid_payload_rejected_before_sending(client, srv):
    with pytest.raises(InvalidRequest, match="messages"):
        client.call("openai", "chat", {"model": "gpt-4o-mini"})
    with pytest.raises(InvalidRequest):
        client.call("openai", "nonexistent", {})
    assert srv.requests == []


# ----------------------------------------------------------------------- streaming
def test_chat_stream_request_and_chunks(client, srv):
    whole = client.call("openai", "chat", CHAT)
    stream = client.stream("openai", "chat", CHAT)
    chunks = list(stream)
    sent = srv.last.json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert len([c for c in chunks if c.text]) >= 3
    assert stream.text == whole.text
    assert stream.usage == whole.usage and stream.finish_reason == "stop"


def test_stream_options_are_merged_not_replaced(client, srv):
    client.stream("openai", "chat", {**CHAT, "stream_options": {"include_obfuscation": False}}).collect()
    assert srv.last.json()["stream_options"] == {"include_usage": True, "include_obfuscation": False}


def test_stream_tool_call_deltas(client):
    res = client.stream("openai", "chat", {**CHAT, "tools": TOOLS,
                                           "tool_choice": {"type": "function",
                                                           "function": {"name": "get_weather"}}}).collect()
    (call,) = res.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments)["query"]
    assert res.finish_reason == "tool_calls"


def test_stream_cut_midway_raises_with_partial_text(client, srv):
    whole = client.stream("openai", "chat", CHAT).collect()
    full = list(proto_answer({**CHAT, "stream": True}).body)
    srv.script(ServerResponse.stream(iter_chunks(full, cut_after=3)))
    stream = client.stream("openai", "chat", CHAT)
    with pytest.raises(StreamError) as info:
        stream.collect()
    assert info.value.partial_text and whole.text.startswith(info.value.partial_text)
    assert len(info.value.partial_text) < len(whole.text)


def test_stream_error_event_midway(client, srv):
    srv.script(sse(ocs.render_chat_chunks("gpt-4o-mini", ["Hel", "lo"], completion_id="c")[0],
                   ocs.render_chat_chunks("gpt-4o-mini", ["Hel", "lo"], completion_id="c")[1],
                   ocs.render_error("The server had an error while processing your request.", "server_error"),
                   done=False))
    stream = client.stream("openai", "chat", CHAT)
    with pytest.raises(StreamError) as info:
        stream.collect()
    assert info.value.partial_text == "Hel"
    assert isinstance(info.value.cause_error, TransientError)


def test_stream_without_done_is_truncated(client, srv):
    chunks = ocs.render_chat_chunks("gpt-4o-mini", ["a", "b"], completion_id="c")
    srv.script(sse(*chunks, done=False))
    with pytest.raises(StreamError, match="truncated") as info:
        client.stream("openai", "chat", CHAT).collect()
    assert info.value.partial_text == "ab"


def test_stream_malformed_event_midway(client, srv):
    first = ocs.render_chat_chunks("gpt-4o-mini", ["a"], completion_id="c")[:2]
    srv.script(ServerResponse.stream([*ocs.sse_body(first, done=False), b"data: {oops\n\n",
                                      b"data: [DONE]\n\n"]))
    with pytest.raises(StreamError) as info:
        client.stream("openai", "chat", CHAT).collect()
    assert info.value.partial_text == "a"
    assert info.value.cause_error.code == "malformed_response"


def test_stream_error_before_first_chunk_is_retried(client, srv):
    srv.script(sse({"error": {"message": "overloaded", "type": "server_error"}}, done=False))
    stream = client.stream("openai", "chat", CHAT)
    assert stream.attempts == 2 and stream.collect().text


# ----------------------------------------------------------------------- completions
def test_legacy_completions_plain_and_stream(client, srv):
    payload = {"model": "gpt-4o-mini", "prompt": "Once upon a time", "max_tokens": 5, "echo": False}
    res = client.call("openai", "completions", payload)
    assert (srv.last.method, srv.last.path) == ("POST", "/v1/completions")
    assert srv.last.json() == payload
    assert res.text and res.finish_reason == "stop" and res.usage.completion_tokens > 0
    streamed = client.stream("openai", "completions", payload).collect()
    assert streamed.text == res.text and streamed.usage == res.usage


# ----------------------------------------------------------------------- embeddings
def test_embeddings_single_list_dimensions_and_base64(client, srv):
    one = client.call("openai", "embeddings", {"model": "text-embedding-3-small", "input": "hello",
                                               "dimensions": 8})
    assert srv.last.path == "/v1/embeddings"
    assert srv.last.json() == {"model": "text-embedding-3-small", "input": "hello", "dimensions": 8}
    assert len(one.data) == 1 and len(one.data[0]) == 8
    many = client.call("openai", "embeddings", {"model": "text-embedding-3-small",
                                                "input": ["hello", "world"], "dimensions": 8})
    assert many.data[0] == one.data[0] and len(many.data) == 2
    b64 = client.call("openai", "embeddings", {"model": "text-embedding-3-small",
                                               "input": ["hello", "world"], "dimensions": 8,
                                               "encoding_format": "base64"})
    assert isinstance(b64.raw["data"][0]["embedding"], str)
    assert b64.data == many.data
    assert many.usage.prompt_tokens == many.usage.total_tokens > 0


def test_single_embeddings_are_coalesced_into_one_call(srv):
    c = make_client(srv, concurrency=1, batch_window=0.5)
    try:
        texts = [f"text number {i}" for i in range(6)]
        reqs = [Request("embeddings", {"model": "text-embedding-3-small", "input": t, "dimensions": 4},
                        backend="openai") for t in texts]
        other = Request("embeddings", {"model": "text-embedding-3-small", "input": "x", "dimensions": 5},
                        backend="openai")
        futures = [c.submit(r) for r in reqs] + [c.submit(other)]
        wait(futures, timeout=20)
        results = [f.result() for f in futures]
    finally:
        c.close(wait=False)
    calls = [r.json() for r in srv.requests]
    # One worker, a generous window: the six equal-settings requests go in one call, the
    # one with other dimensions in its own (settings never mix).
    assert calls == [{"model": "text-embedding-3-small", "input": texts, "dimensions": 4},
                     {"model": "text-embedding-3-small", "input": "x", "dimensions": 5}]
    assert len(results[-1].data[0]) == 5
    for text, res in zip(texts, results):
        assert res.data == [ocs.synth_vector(text, 4)]  # each caller gets its own vector
    total = sum(r.usage.prompt_tokens for r in results[:-1])
    assert total == sum(oc.count_tokens(t) for t in texts)


def test_batch_hooks_and_mismatch():
    b = OpenAIBackend(BackendConfig(name="openai", base_url="http://127.0.0.1:9/v1"))
    r1 = Request("embeddings", {"model": "e", "input": "a", "dimensions": 4})
    r2 = Request("embeddings", {"model": "e", "input": "bb", "dimensions": 4})
    assert b.batch_key(r1) == b.batch_key(r2) is not None
    assert b.batch_key(Request("embeddings", {"model": "e", "input": "a", "dimensions": 8})) != b.batch_key(r1)
    assert b.batch_key(Request("embeddings", {"model": "e", "input": ["a"]})) is None
    assert b.batch_key(Request("chat", CHAT)) is None
    assert b.max_batch_size(r1) == 2048
    assert b.max_batch_size(Request("embeddings", {"model": "e", "input": "x" * 30000})) < 100
    merged = b.merge_batch([r1, r2])
    assert merged.payload == {"model": "e", "input": ["a", "bb"], "dimensions": 4}
    assert merged.request_id not in (r1.request_id, r2.request_id)
    res = Result(data=[[1.0], [2.0]], usage=Usage(10, 0, 10))
    parts = b.split_batch([r1, r2], res)
    assert [p.data for p in parts] == [[[1.0]], [[2.0]]]
    assert sum(p.usage.prompt_tokens for p in parts) == 10
    with pytest.raises(CountMismatch, match="expected 2 results for 2 inputs, received 1"):
        b.split_batch([r1, r2], Result(data=[[1.0]]))


def test_embedding_count_mismatch_from_server_is_not_retried(client, srv):
    # A short answer is deterministic: one attempt, a typed error naming both counts.
    wrong = ocs.render_embeddings("text-embedding-3-small", [[0.1, 0.2]])
    srv.script(ServerResponse.json(wrong))
    before = len(srv.requests)
    with pytest.raises(CountMismatch) as info:
        client.call("openai", "embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"],
                                             "dimensions": 2})
    assert (info.value.expected, info.value.received, info.value.attempts) == (2, 1, 1)
    assert len(srv.requests) == before + 1
    assert srv.last.json()["input"] == ["a", "b"]


def test_embedding_indices_must_match_the_inputs(client, srv):
    body = oc.render_embeddings("text-embedding-3-small", [[0.1], [0.2]])
    body["data"][1]["index"] = 0  # two answers for input 0, none for input 1
    srv.script(ServerResponse.json(body))
    with pytest.raises(CountMismatch, match="index 0 does not match"):
        client.call("openai", "embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]})
    swapped = oc.render_embeddings("text-embedding-3-small", [[0.1], [0.2]])
    swapped["data"].reverse()  # out of order but complete: put back in input order
    srv.script(ServerResponse.json(swapped))
    res = client.call("openai", "embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]})
    assert res.data == [[0.1], [0.2]]


def test_moderations_short_answer_is_an_error(client, srv):
    srv.script(ServerResponse.json({"id": "modr-1", "model": "omni-moderation-latest",
                                    "results": [{"flagged": False}]}))
    with pytest.raises(CountMismatch, match="expected 2 results for 2 inputs, received 1"):
        client.call("openai", "moderations", {"model": "omni-moderation-latest",
                                              "input": ["a", "b"]})


# ----------------------------------------------------------------------- other operations
def test_moderations(client, srv):
    res = client.call("openai", "moderations", {"model": "omni-moderation-latest",
                                                "input": ["a calm day", "attack them"]})
    assert (srv.last.method, srv.last.path) == ("POST", "/v1/moderations")
    assert srv.last.json() == {"model": "omni-moderation-latest", "input": ["a calm day", "attack them"]}
    assert srv.last.header("authorization") == "Bearer test-key-1"
    assert [r["flagged"] for r in res.data] == [False, True]
    assert res.data[1]["categories"]["violence"] is True
    assert res.model == "omni-moderation-latest"


def test_models_and_model(client, srv):
    res = client.call("openai", "models", {})
    assert (srv.last.method, srv.last.path, srv.last.body) == ("GET", "/v1/models", b"")
    assert {m["id"] for m in res.data} == {"gpt-4o-mini", "text-embedding-3-small", "omni-moderation-latest"}
    one = client.call("openai", "model", {"model": "gpt-4o-mini"})
    assert srv.last.path == "/v1/models/gpt-4o-mini"
    assert one.model == "gpt-4o-mini" and one.data["object"] == "model"
    with pytest.raises(NotFound):
        client.call("openai", "model", {"model": "no-such-model"})
    assert len(srv.requests) == 3  # a 404 is not retried


# ----------------------------------------------------------------------- errors
def test_wrong_model_is_not_found(client):
    with pytest.raises(NotFound) as info:
        client.call("openai", "chat", {**CHAT, "model": "gpt-nope"})
    assert info.value.code == "model_not_found" and info.value.status == 404


def test_context_too_long(srv):
    small = LocalServer(OpenAIServer(context_window=16))
    c = make_client(small)
    try:
        with pytest.raises(ContextTooLong) as info:
            c.call("openai", "chat", {**CHAT, "messages": [{"role": "user", "content": "word " * 50}]})
        assert info.value.code == "context_length_exceeded" and len(small.requests) == 1
    finally:
        c.close(wait=False)
        small.close()


def test_content_filter_error(client, srv):
    srv.script(ServerResponse.json(ocs.render_error(
        "The response was filtered due to the prompt triggering content management policy.",
        "invalid_request_error", "content_filter", "prompt"), 400))
    with pytest.raises(ContentFiltered):
        client.call("openai", "chat", CHAT)
    assert len(srv.requests) == 1


def test_invalid_key_never_leaks(srv):
    bad = LocalServer(OpenAIServer(bad_keys={"test-key-1"}))
    c = make_client(bad)
    try:
        with pytest.raises(AuthError) as info:
            c.call("openai", "models", {})
        err = info.value
        assert err.code == "invalid_api_key" and err.status == 401
        for text in (str(err), repr(err), err.message):
            assert "test-key-1" not in text and "-1" not in text.split("provided:")[-1][:20]
        assert len(bad.requests) == 1
    finally:
        c.close(wait=False)
        bad.close()


def test_missing_key_is_auth_error(srv):
    r = requests.get(srv.url + "/v1/models", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"


def test_429_with_headers_is_rate_limited_and_retried(client, srv):
    info = RateLimitInfo(limit_requests=60000, remaining_requests=0, reset_requests=0.02,
                         limit_tokens=40000, remaining_tokens=39000, reset_tokens=0.01, retry_after=0.02)
    srv.script(lambda req: srv.protocol.rate_limited(req, info))
    res = client.call("openai", "chat", CHAT)
    assert res.attempts == 2
    assert client.stats().backends["openai"]["rate_limited"] == 1


def test_429_answer_looks_like_openai(srv):
    info = RateLimitInfo(limit_requests=3, remaining_requests=0, reset_requests=20.0,
                         limit_tokens=40000, remaining_tokens=39000, reset_tokens=0.01)
    srv.script(lambda req: srv.protocol.rate_limited(req, info))
    resp = requests.post(srv.url + "/v1/chat/completions", json=CHAT,
                         headers={"Authorization": "Bearer test-key-1"}, timeout=5)
    assert resp.status_code == 429
    body = resp.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"
    assert "requests per min (RPM): Limit 3" in body["message"]
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["x-ratelimit-reset-requests"] == "20s"
    assert resp.headers["retry-after"] == "20" and resp.headers["retry-after-ms"] == "20000"
    backend = OpenAIBackend(BackendConfig(name="openai", base_url=srv.url + "/v1"))
    parsed = backend.rate_limit_info(resp)
    assert (parsed.limit_requests, parsed.remaining_requests, parsed.reset_requests) == (3, 0, 20.0)
    assert (parsed.limit_tokens, parsed.remaining_tokens, parsed.reset_tokens) == (40000, 39000, 0.01)
    assert parsed.retry_after == 20.0
    err = backend.classify_error(None, resp)
    assert isinstance(err, RateLimited) and err.retry_after == 20.0 and err.provider_request_id.startswith("req_")


def test_success_headers_feed_the_limiter(srv):
    resp = requests.get(srv.url + "/v1/models", headers={"Authorization": "Bearer test-key-1"}, timeout=5)
    info = OpenAIBackend(BackendConfig(name="openai", base_url="http://x")).rate_limit_info(resp)
    assert (info.limit_requests, info.remaining_requests, info.reset_requests) == (500, 499, 0.12)
    assert (info.limit_tokens, info.remaining_tokens) == (200000, 199000)


def test_insufficient_quota_moves_to_another_key(srv):
    c = make_client(srv, keys=("test-key-1", "test-key-2"), concurrency=1)
    try:
        srv.script(lambda req: srv.protocol.insufficient_quota(req))
        res = c.call("openai", "models", {})
        keys_used = [r.header("authorization") for r in srv.requests]
        assert len(keys_used) == 2 and keys_used[0] != keys_used[1]
        assert res.attempts == 2
    finally:
        c.close(wait=False)


def test_insufficient_quota_on_the_only_key_fails_without_retry(client, srv):
    srv.script(lambda req: srv.protocol.insufficient_quota(req))
    with pytest.raises(AuthError) as info:
        client.call("openai", "models", {})
    assert info.value.code == "insufficient_quota" and len(srv.requests) == 1


def test_x_should_retry_false_stops_retries(client, srv):
    srv.script(ServerResponse.json(ocs.render_error("boom", "server_error"), 500,
                                   {"x-should-retry": "false"}))
    with pytest.raises(TransientError):
        client.call("openai", "models", {})
    assert len(srv.requests) == 1


@pytest.mark.parametrize("answer", [
    ServerResponse.json(ocs.render_error("The server had an error while processing your request.",
                                        "server_error"), 500),
    ServerResponse.text("<html><head><title>502 Bad Gateway</title></head></html>", 502, "text/html"),
    ServerResponse(200, {"Content-Type": "application/json"}, b""),
    ServerResponse(200, {"Content-Type": "application/json"}, b'{"id": "chatcmpl-1", "choi'),
    ServerResponse.text("<html>captive portal</html>", 200, "text/html"),
    ServerResponse.json({"id": "x", "object": "chat.completion", "choices": []}),
    ServerResponse.json(ocs.render_error("conflict", "invalid_request_error"), 409),
])
def test_bad_answers_are_transient_and_retried(client, srv, answer):
    srv.script(answer)
    res = client.call("openai", "chat", CHAT)
    assert res.attempts == 2 and res.text


def test_config_from_metadata_and_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keys = OpenAIBackend.keys_from({"openai_api_key": "test-key-1"}, environ={})
    assert [k.reveal() for k in keys] == ["test-key-1"] and "test-key-1" not in repr(keys)
    keys = OpenAIBackend.keys_from({}, environ={"OPENAI_API_KEY": "test-key-2"})
    assert [k.reveal() for k in keys] == ["test-key-2"]
    assert OpenAIBackend.base_url_from({}, environ={"OPENAI_BASE_URL": "http://proxy/v1"}) == "http://proxy/v1"
    assert OpenAIBackend().base_url == "https://api.openai.com/v1"
    assert OpenAIBackend(BackendConfig(name="openai", base_url="http://h/v1/")).url("models") == "http://h/v1/models"


def test_tool_call_shape_parsed_from_real_body(client, srv):
    body = {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                         "message": {"role": "assistant", "content": None, "refusal": None,
                                     "tool_calls": [{"id": "call_a", "type": "function", "function": {
                                         "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                                         {"id": "call_b", "type": "function", "function": {
                                             "name": "get_time", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110,
                      "prompt_tokens_details": {"cached_tokens": 0}}}
    srv.script(ServerResponse.json(body, headers={"x-request-id": "req_fixed"}))
    res = client.call("openai", "chat", {**CHAT, "tools": TOOLS})
    assert res.tool_calls == (ToolCall("call_a", "get_weather", "{\"city\":\"Paris\"}"),
                              ToolCall("call_b", "get_time", "{}"))
    assert res.usage == Usage(80, 30, 110) and res.provider_request_id == "req_fixed"


def test_default_server_sends_no_fixed_rate_limit_headers():
    resp = OpenAIServer().handle(ServerRequest("GET", "/v1/models",
                                               headers={"authorization": "Bearer test-key-1"}))
    assert resp.status == 200 and resp.headers["x-request-id"].startswith("req_")
    assert not any(k.startswith("x-ratelimit") for k in resp.headers)


# ----------------------------------------------------------------------- base URL variants
@pytest.mark.parametrize("path", ["", "/"])
def test_a_base_url_without_v1_gives_a_404_naming_the_url_tried(srv, path):
    c = Client([BackendConfig(name="openai", keys=["test-key-1"], base_url=srv.url + path)],
               ClientConfig(retry=RetryPolicy(max_attempts=3, base_delay=0.001)))
    try:
        with pytest.raises(NotFound) as info:
            c.call("openai", "chat", CHAT)
    finally:
        c.close(wait=False)
    assert len(srv.requests) == 1 and srv.last.path == "/chat/completions"
    msg = str(info.value)
    assert f"HTTP 404 from POST {srv.url}/chat/completions" in msg
    assert f"routes usually live under {srv.url}/v1" in msg
    assert "test-key-1" not in msg


def test_a_base_url_with_a_path_is_used_as_given_and_404s_keep_the_provider_message(srv):
    with make_client(srv) as c:  # base URL .../v1: a model 404 is the provider's own message
        with pytest.raises(NotFound) as info:
            c.call("openai", "chat", {**CHAT, "model": "no-such-model"})
    assert srv.last.path == "/v1/chat/completions"
    assert "HTTP 404 from" not in str(info.value) and "no-such-model" in str(info.value)


def test_a_stream_mislabelled_as_json_is_still_read_as_a_stream(srv, client):
    from ipfs_accelerate_py.wire import openai_compat as oc

    chunks = oc.render_chat_chunks("gpt-4o-mini", ["Hel", "lo"], completion_id="c1")
    srv.script(ServerResponse.stream(oc.sse_body(chunks), content_type="application/json"))
    res = client.stream("openai", "chat", {"model": "gpt-4o-mini",
                                           "messages": [{"role": "user", "content": "hi"}]}).collect()
    assert res.text == "Hello" and len(srv.requests) == 1
