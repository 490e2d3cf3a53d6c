"""Tests of the OpenAI-compatible wire shapes: parsers, error classes, renderers, and a
round trip over real HTTP through the generic responder."""

from __future__ import annotations

import json

import pytest
import requests

from ipfs_accelerate_py.errors import (
    AuthError,
    ConnectionFailed,
    ContentFiltered,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTimeout,
    TransientError,
)
from ipfs_accelerate_py.results import IncompleteStream, ResultStream, ToolCall, Usage
from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, iter_chunks, route
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers
from ipfs_accelerate_py.wire.sse import SSEEvent, iter_sse_lines


def events(*objs, done=True):
    out = [SSEEvent(json.dumps(o) if not isinstance(o, str) else o) for o in objs]
    if done:
        out.append(SSEEvent("[DONE]"))
    return out


# ----------------------------------------------------------------------- error classes
@pytest.mark.parametrize("status,body,cls,code", [
    (400, {"error": {"message": "too long", "type": "invalid_request_error",
                     "param": "messages", "code": "context_length_exceeded"}}, ContextTooLong,
     "context_length_exceeded"),
    (400, {"error": {"message": "filtered", "type": None, "code": "content_filter"}},
     ContentFiltered, "content_filter"),
    (400, {"error": {"message": "policy", "type": "invalid_request_error",
                     "code": "content_policy_violation"}}, ContentFiltered, "content_policy_violation"),
    (401, {"error": {"message": "bad key", "type": "invalid_request_error",
                     "code": "invalid_api_key"}}, AuthError, "invalid_api_key"),
    (403, {"error": {"message": "region", "type": "invalid_request_error", "code": None}},
     AuthError, "invalid_request_error"),
    (404, {"error": {"message": "no model", "type": "invalid_request_error",
                     "code": "model_not_found"}}, NotFound, "model_not_found"),
    (429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
     RateLimited, "rate_limit_exceeded"),
    (429, {"error": {"message": "quota", "type": "insufficient_quota",
                     "code": "insufficient_quota"}}, AuthError, "insufficient_quota"),
    (408, {"error": {"message": "timeout", "type": "server_error"}}, RequestTimeout, "server_error"),
    (409, {"error": {"message": "conflict", "type": "invalid_request_error"}}, TransientError,
     "invalid_request_error"),
    (500, {"error": {"message": "oops", "type": "server_error", "code": None}}, TransientError,
     "server_error"),
    (400, {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400},
     InvalidRequest, "400"),
    (422, {"error": "validation failed"}, InvalidRequest, None),
])
def test_classify_error_body(status, body, cls, code):
    info = oc.classify_error_body(status, body)
    assert info.cls is cls
    assert info.code == code


def test_classify_without_status_uses_type_then_numeric_code():
    assert oc.classify_error_body(None, {"error": {"message": "x", "type": "server_error"}}).cls is TransientError
    assert oc.classify_error_body(None, {"error": {"message": "x", "type": "rate_limit_error"}}).cls is RateLimited
    assert oc.classify_error_body(None, {"error": {"message": "x", "code": 401}}).cls is AuthError
    assert oc.classify_error_body(None, {"error": {"message": "x"}}).cls is TransientError


def test_classify_non_json_bodies():
    assert "HTML" in oc.classify_error_body(502, None, "<html>bad gateway</html>").message
    assert "empty body" in oc.classify_error_body(503, None, "").message
    assert oc.classify_error_body(503, None, "").cls is TransientError


def test_key_fragments_are_redacted_from_messages():
    info = oc.classify_error_body(401, {"error": {
        "message": "Incorrect API key provided: sk-proj-abc***********wxyz. You can find your key",
        "code": "invalid_api_key"}})
    assert "abc" not in info.message and "wxyz" not in info.message
    assert "***" in info.message
    assert "abcdef123456" not in oc.redact("the key sk-abcdef123456 leaked")


# ----------------------------------------------------------------------- bodies
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"},
            {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]},
             "finish_reason": "tool_calls", "logprobs": {"content": []}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


def test_parse_chat_completion():
    r = oc.parse_chat_completion(CHAT, request_id="req_9")
    assert r.text == ""
    assert r.tool_calls == (ToolCall(id="call_1", name="lookup", arguments="{\"q\": 1}"),)
    assert r.finish_reason == "tool_calls"
    assert r.usage == Usage(7, 3, 10)
    assert r.model == "m" and r.request_id == "req_9" and r.raw is CHAT
    assert [c["index"] for c in r.data] == [0, 1] and r.data[1]["text"] == "second"


def test_parse_chat_completion_legacy_function_call_and_missing_choices():
    body = {"model": "m", "choices": [{"index": 0, "message": {
        "content": None, "function_call": {"name": "f", "arguments": "{}"}}, "finish_reason": "function_call"}]}
    assert oc.parse_chat_completion(body).tool_calls == (ToolCall(None, "f", "{}"),)
    with pytest.raises(TransientError):
        oc.parse_chat_completion({"model": "m", "choices": []})
    with pytest.raises(RateLimited):
        oc.parse_chat_completion({"error": {"message": "x", "code": "rate_limit_exceeded"}})


def test_parse_completion():
    r = oc.parse_completion({"id": "cmpl-1", "model": "m", "choices": [
        {"text": "hello", "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    assert (r.text, r.finish_reason, r.usage.total_tokens, r.request_id) == ("hello", "length", 2, None)
    assert r.raw["id"] == "cmpl-1"  # a completion id is not a request id


def test_parse_embeddings_orders_by_index_and_decodes_base64():
    v0, v1 = [0.5, -0.25, 1.0], [0.125, 0.0, -1.0]
    body = {"object": "list", "model": "e", "usage": {"prompt_tokens": 4, "total_tokens": 4},
            "data": [{"object": "embedding", "index": 1, "embedding": oc.encode_base64_floats(v1)},
                     {"object": "embedding", "index": 0, "embedding": v0}]}
    r = oc.parse_embeddings(body, expected=2)
    assert r.data == [v0, v1]
    assert r.usage == Usage(4, 0, 4)
    with pytest.raises(TransientError, match="expected 3"):
        oc.parse_embeddings(body, expected=3)
    with pytest.raises(TransientError):
        oc.parse_embeddings({"data": [{"index": 0, "embedding": "!!notbase64"}]})


def test_embedding_inputs_counts():
    assert oc.embedding_inputs("a") == 1
    assert oc.embedding_inputs(["a", "b"]) == 2
    assert oc.embedding_inputs([1, 2, 3]) == 1
    assert oc.embedding_inputs([[1], [2]]) == 2


def test_parse_models():
    r = oc.parse_model_list({"object": "list", "data": [{"id": "a", "object": "model"}]})
    assert r.data == [{"id": "a", "object": "model"}]
    assert oc.parse_model({"id": "a", "object": "model"}).model == "a"
    with pytest.raises(TransientError):
        oc.parse_model_list({"object": "list"})


# ----------------------------------------------------------------------- streams
def chunk(content=None, finish=None, tool=None, usage=None, choices=True):
    delta = {}
    if content is not None:
        delta["content"] = content
    if tool is not None:
        delta["tool_calls"] = [tool]
    obj = {"id": "c", "object": "chat.completion.chunk", "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    if usage:
        obj["usage"] = usage
    return obj


def test_stream_text_tools_usage_and_done():
    evs = events(chunk(""), chunk("Hel"), chunk("lo"),
                 chunk(tool={"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}),
                 chunk(tool={"index": 0, "function": {"arguments": "{\"a\":"}}),
                 chunk(tool={"index": 0, "function": {"arguments": "1}"}}),
                 chunk(finish="tool_calls"),
                 chunk(choices=False, usage={"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}),
                 )
    chunks = list(oc.iter_stream_events(evs))
    stream = ResultStream(chunks[0], iter(chunks[1:]), request_id="r")
    res = stream.collect()
    assert res.text == "Hello"
    assert res.tool_calls == (ToolCall("call_1", "f", "{\"a\":1}"),)
    assert res.finish_reason == "tool_calls"
    assert res.usage == Usage(2, 3, 5)


def test_stream_follows_only_the_first_choice_and_legacy_text():
    ev = events({"choices": [{"index": 1, "delta": {"content": "x"}}, {"index": 0, "delta": {"content": "y"}}]},
                {"choices": [{"index": 0, "text": "z", "finish_reason": None}]})
    assert "".join(c.text for c in oc.iter_stream_events(ev)) == "yz"


def test_stream_without_done_is_incomplete():
    with pytest.raises(IncompleteStream):
        list(oc.iter_stream_events(events(chunk("a"), done=False)))
    with pytest.raises(IncompleteStream):
        list(oc.iter_stream_events([]))


def test_stream_error_event_raises_classified_error():
    gen = oc.iter_stream_events(events(chunk("a"), {"error": {"message": "overloaded",
                                                              "type": "server_error"}}))
    assert next(gen).text == "a"
    with pytest.raises(TransientError, match="overloaded"):
        next(gen)
    with pytest.raises(RateLimited):
        list(oc.iter_stream_events([SSEEvent('{"message": "slow", "type": "rate_limit_error"}',
                                             event="error")]))


def test_stream_malformed_event_is_transient():
    with pytest.raises(TransientError) as info:
        list(oc.iter_stream_events(events("{not json")))
    assert info.value.code == "malformed_response"


def test_stream_error_factory_is_used():
    seen = []

    def factory(cls, message, code):
        seen.append((cls, code))
        return cls(message, code=code, backend="x")

    with pytest.raises(TransientError) as info:
        list(oc.iter_stream_events(events("garbage"), factory))
    assert info.value.backend == "x" and seen == [(TransientError, "malformed_response")]


# ----------------------------------------------------------------------- renderers
def test_rendered_chat_and_chunks_parse_back():
    calls = [ocs.render_tool_call("call_x", "f", "{\"k\": \"value\"}")]
    body = ocs.render_chat_completion("m", ["one", "two"], completion_id="id1",
                                     usage=ocs.usage_dict(3, 2))
    r = oc.parse_chat_completion(body)
    assert r.text == "one" and r.data[1]["text"] == "two" and r.usage == Usage(3, 2, 5)
    frames = ocs.sse_body(ocs.render_chat_chunks("m", [], completion_id="id1", tool_calls=calls,
                                               usage=ocs.usage_dict(3, 2)))
    lines = b"".join(frames).decode().splitlines()
    chunks = list(oc.iter_stream_events(iter_sse_lines(lines)))
    res = ResultStream(chunks[0], iter(chunks[1:]), request_id="r").collect()
    assert res.tool_calls == (ToolCall("call_x", "f", "{\"k\": \"value\"}"),)
    assert res.usage == Usage(3, 2, 5) and res.finish_reason == "tool_calls"


def test_ratelimit_headers_round_trip():
    info = RateLimitInfo(limit_requests=60, remaining_requests=0, reset_requests=90.5,
                         limit_tokens=1000, remaining_tokens=10, reset_tokens=0.02)
    headers = ocs.ratelimit_headers(info)
    assert headers["x-ratelimit-reset-requests"] == "1m30.5s"
    assert headers["x-ratelimit-reset-tokens"] == "20ms"
    back = parse_openai_headers(headers)
    assert (back.limit_requests, back.remaining_requests, back.reset_requests) == (60, 0, 90.5)
    assert (back.limit_tokens, back.remaining_tokens, back.reset_tokens) == (1000, 10, 0.02)
    assert ocs.retry_after_headers(0.25) == {"retry-after": "1", "retry-after-ms": "250"}


def test_synthetic_content_is_deterministic():
    assert ocs.synth_text("hi", 1) == ocs.synth_text("hi", 1) != ocs.synth_text("hi", 2)
    v = ocs.synth_vector("hi", 10)
    assert len(v) == 10 and abs(sum(x * x for x in v) - 1) < 1e-5
    assert oc.decode_base64_floats(oc.encode_base64_floats(v)) == v


# ----------------------------------------------------------------------- over HTTP
class _Compat(ProtocolServer):
    name = "compat-test"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.compat = ocs.CompatResponder(["m1", "e1"], seed=seed, context_window=64)

    @route("POST", "/v1/chat/completions")
    def chat(self, req: ServerRequest) -> ServerResponse:
        return self.compat.chat(req)

    @route("POST", "/v1/completions")
    def completions(self, req: ServerRequest) -> ServerResponse:
        return self.compat.completions(req)

    @route("POST", "/v1/embeddings")
    def embeddings(self, req: ServerRequest) -> ServerResponse:
        return self.compat.embeddings(req)

    @route("GET", "/v1/models")
    def models(self, req: ServerRequest) -> ServerResponse:
        return self.compat.models(req)

    @route("GET", "/v1/models/{model}")
    def model(self, req: ServerRequest, model: str) -> ServerResponse:
        return self.compat.model(req, model)


@pytest.fixture(scope="module")
def srv():
    s = LocalServer(_Compat())
    yield s
    s.close()


def post(srv, path, body, stream=False):
    return requests.post(srv.url + path, json=body, stream=stream, timeout=10)


def test_http_chat_and_stream_agree(srv):
    body = {"model": "m1", "messages": [{"role": "user", "content": "hello"}]}
    whole = oc.parse_chat_completion(post(srv, "/v1/chat/completions", body).json())
    resp = post(srv, "/v1/chat/completions", {**body, "stream": True,
                                              "stream_options": {"include_usage": True}}, True)
    assert resp.headers["Content-Type"] == "text/event-stream"
    chunks = list(oc.iter_stream(resp))
    res = ResultStream(chunks[0], iter(chunks[1:]), request_id="r").collect()
    assert res.text == whole.text and res.usage == whole.usage and res.finish_reason == "stop"


def test_http_cut_stream_raises_connection_failed(srv):
    body = {"model": "m1", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    full = srv.protocol(ServerRequest("POST", "/v1/chat/completions",
                                      body=json.dumps(body).encode()))
    srv.script(ServerResponse.stream(iter_chunks(list(full.body), cut_after=3)))
    resp = post(srv, "/v1/chat/completions", body, True)
    with pytest.raises((ConnectionFailed, IncompleteStream)):
        list(oc.iter_stream(resp))


def test_http_errors_in_the_dialect(srv):
    r = post(srv, "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and oc.classify_response(r).cls is NotFound
    r = post(srv, "/v1/chat/completions", {"model": "m1", "messages": [{"role": "user", "content": "x" * 400}]})
    assert r.status_code == 400 and oc.classify_response(r).cls is ContextTooLong
    r = requests.post(srv.url + "/v1/embeddings", data=b"{bad", timeout=10)
    assert r.status_code == 400 and oc.classify_response(r).cls is InvalidRequest


def test_http_embeddings_completions_models(srv):
    floats = oc.parse_embeddings(post(srv, "/v1/embeddings", {"model": "e1", "input": ["a", "b"],
                                                              "dimensions": 4}).json(), expected=2)
    b64 = oc.parse_embeddings(post(srv, "/v1/embeddings", {"model": "e1", "input": ["a", "b"],
                                                           "dimensions": 4,
                                                           "encoding_format": "base64"}).json())
    assert floats.data == b64.data and len(floats.data[0]) == 4
    comp = oc.parse_completion(post(srv, "/v1/completions", {"model": "m1", "prompt": "hi"}).json())
    assert comp.text and comp.usage.prompt_tokens == 1
    ids = [m["id"] for m in oc.parse_model_list(requests.get(srv.url + "/v1/models", timeout=10).json()).data]
    assert ids == ["m1", "e1"]
    assert requests.get(srv.url + "/v1/models/zzz", timeout=10).status_code == 404


def test_fastapi_detail_bodies():
    info = oc.classify_error_body(422, {"detail": [{"type": "missing", "loc": ["body", "messages"],
                                                    "msg": "Field required"}]})
    assert info.cls is InvalidRequest and info.message == "body.messages: Field required"
    info = oc.classify_error_body(401, {"detail": "Not authenticated"})
    assert info.cls is AuthError and info.message == "Not authenticated"


def test_parse_chunk_is_public():
    c = oc.parse_chunk({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    assert (c.text, c.finish_reason, c.usage) == ("x", "stop", Usage(1, 1, 2))


def test_plain_text_error_event():
    with pytest.raises(TransientError, match="upstream went away") as info:
        list(oc.iter_stream_events([SSEEvent("upstream went away", event="error")]))
    assert info.value.code == "stream_error"


def test_null_error_field_is_not_an_error_event():
    assert not oc.is_error_event({"error": None, "choices": []})
    chunks = list(oc.iter_stream_events(events({"error": None, "choices": [
        {"index": 0, "delta": {"content": "ok"}}]})))
    assert chunks[0].text == "ok"


def test_json_mode_answers_json(srv):
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}}
    text = oc.parse_chat_completion(post(srv, "/v1/chat/completions", body).json()).text
    assert isinstance(json.loads(text)["answer"], str)
