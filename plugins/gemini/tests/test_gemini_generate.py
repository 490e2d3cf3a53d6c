"""The gemini backend's generate/chat and streaming over real HTTP against GeminiServer."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py import Client
from ipfs_accelerate_py.errors import ContentFiltered, InvalidRequest, StreamError
from ipfs_accelerate_py.server import ServerResponse, iter_chunks
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_gemini.server import GeminiServer

MODEL = "gemini-sim-flash"
CONTENTS = [{"role": "user", "parts": [{"text": "Why queue requests?"}]}]


@pytest.fixture()
def proto() -> GeminiServer:
    return GeminiServer(seed=5)


@pytest.fixture()
def srv(proto):
    server = LocalServer(proto)
    yield server
    server.close()


def make_client(srv, attempts: int = 3, base_url: str | None = None, **options) -> Client:
    return testing.make_client("gemini", base_url or srv.url, attempts=attempts, base_delay=0.01,
                               max_delay=0.05, options=options)


@pytest.fixture()
def client(srv):
    c = make_client(srv)
    yield c
    c.close()


def test_generate_sends_the_native_request_with_the_key_in_a_header(srv, client):
    payload = {"model": MODEL, "contents": CONTENTS,
               "systemInstruction": {"parts": [{"text": "Be brief."}]},
               "generationConfig": {"temperature": 0.3, "maxOutputTokens": 100},
               "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                   "threshold": "BLOCK_ONLY_HIGH"}]}
    res = client.call("gemini", "generate", payload)
    req = srv.last
    assert (req.method, req.path) == ("POST", f"/v1beta/models/{MODEL}:generateContent")
    assert req.query == {}  # never ?key=
    assert req.header("x-goog-api-key") == "test-key-1"
    assert req.header("authorization") is None
    assert req.header("content-type") == "application/json"
    assert "x-request-id" not in req.headers
    assert req.json() == {k: v for k, v in payload.items() if k != "model"}
    raw = res.raw
    assert res.text == raw["candidates"][0]["content"]["parts"][0]["text"]
    assert res.finish_reason == "STOP" and res.model == MODEL
    meta = raw["usageMetadata"]
    assert (res.usage.prompt_tokens, res.usage.completion_tokens, res.usage.total_tokens) == (
        meta["promptTokenCount"], meta["candidatesTokenCount"], meta["totalTokenCount"])
    assert res.provider_request_id == raw["responseId"]


def test_chat_converts_openai_style_messages(srv, client):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "three"}]}]
    res = client.call("gemini", "chat", {"model": MODEL, "messages": messages, "max_tokens": 50,
                                         "temperature": 0.1, "top_p": 0.9, "stop": "END"})
    assert srv.last.path == f"/v1beta/models/{MODEL}:generateContent"
    assert srv.last.json() == {
        "contents": [{"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                     {"role": "model", "parts": [{"text": "ok"}]},
                     {"role": "user", "parts": [{"text": "three"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.1, "topP": 0.9,
                             "stopSequences": ["END"]}}
    assert res.text


def test_model_names_and_a_versioned_base_url(srv):
    with make_client(srv, base_url=srv.url + "/v1beta") as c:
        c.call("gemini", "generate", {"model": "models/" + MODEL, "contents": CONTENTS})
    assert srv.last.path == f"/v1beta/models/{MODEL}:generateContent"
    with make_client(srv, model=MODEL) as c:  # the option supplies a default model
        c.call("gemini", "generate", {"contents": CONTENTS})
    assert srv.last.path == f"/v1beta/models/{MODEL}:generateContent"


TOOLS = [{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                                    "parameters": {"type": "OBJECT", "properties": {
                                        "city": {"type": "STRING"}, "days": {"type": "INTEGER"}}}}]}]


def test_function_calls_become_tool_calls_and_the_answer_goes_back(srv, client):
    res = client.call("gemini", "generate", {"model": MODEL, "contents": CONTENTS, "tools": TOOLS,
                                             "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}})
    assert srv.last.json()["tools"] == TOOLS
    (call,) = res.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "example", "days": 1}
    follow = CONTENTS + [res.raw["candidates"][0]["content"],
                         {"role": "user", "parts": [{"functionResponse": {
                             "name": "get_weather", "response": {"forecast": "sunny"}}}]}]
    res2 = client.call("gemini", "generate", {"model": MODEL, "contents": follow, "tools": TOOLS})
    assert res2.tool_calls == () and res2.text


def test_openai_style_tools_and_tool_messages_are_converted(srv, client):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    client.call("gemini", "chat", {"model": MODEL, "messages": messages, "tools": tools})
    body = srv.last.json()
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"content": "sunny"}}}]}]


def test_a_payload_that_cannot_be_converted_is_refused_before_sending(srv, client):
    with pytest.raises(InvalidRequest):
        client.call("gemini", "chat", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]})
    with pytest.raises(InvalidRequest):
        client.call("gemini", "generate", {"model": MODEL})
    assert srv.requests == []


def test_max_output_tokens(client):
    res = client.call("gemini", "generate", {"model": MODEL, "contents": CONTENTS,
                                             "generationConfig": {"maxOutputTokens": 3}})
    assert res.finish_reason == "MAX_TOKENS" and len(res.text.split()) == 3


SAFETY_STOP = {"candidates": [{"content": {"parts": [{"text": "Partial"}], "role": "model"},
                               "finishReason": "SAFETY", "index": 0,
                               "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                                  "probability": "HIGH", "blocked": True}]}],
               "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
               "modelVersion": MODEL}
PROMPT_BLOCKED = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]},
    "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": MODEL}


@pytest.mark.parametrize("body,code", [(SAFETY_STOP, "SAFETY"), (PROMPT_BLOCKED, "SAFETY")])
def test_safety_answers_are_content_filtered_and_not_retried(srv, client, body, code):
    srv.script(ServerResponse.json(body))
    with pytest.raises(ContentFiltered) as info:
        client.call("gemini", "generate", {"model": MODEL, "contents": CONTENTS})
    assert info.value.code == code
    assert len(srv.requests) == 1


# ---------------------------------------------------------------------------- streaming
def test_stream_uses_alt_sse_and_yields_text_usage_and_finish(srv, client):
    payload = {"model": MODEL, "contents": CONTENTS}
    whole = client.call("gemini", "generate", payload)
    stream = client.stream("gemini", "chat", payload)
    chunks = list(stream)
    req = srv.last
    assert (req.method, req.path) == ("POST", f"/v1beta/models/{MODEL}:streamGenerateContent")
    assert req.query == {"alt": ["sse"]}
    assert req.header("x-goog-api-key") == "test-key-1"
    assert req.json() == {"contents": CONTENTS}
    assert len(chunks) > 1
    assert "".join(c.text for c in chunks) == whole.text
    assert stream.finish_reason == "STOP"
    assert stream.usage == whole.usage


def test_generate_streams_function_calls(client):
    res = client.stream("gemini", "generate", {"model": MODEL, "contents": CONTENTS,
                                               "tools": TOOLS}).collect()
    (call,) = res.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "example"


def _chunks(proto: GeminiServer):
    response = proto.generate(MODEL, {"contents": CONTENTS})
    return response, proto.stream_chunks(response)


def test_stream_cut_midway_raises_with_partial_text(srv, proto, client):
    response, chunks = _chunks(proto)
    srv.script(ServerResponse.stream(iter_chunks(proto.sse(chunks), cut_after=2)))
    stream = client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS})
    with pytest.raises(StreamError) as info:
        stream.collect()
    full = response["candidates"][0]["content"]["parts"][0]["text"]
    assert info.value.partial_text and full.startswith(info.value.partial_text)
    assert info.value.partial_text != full


def test_stream_ending_without_finish_reason_is_incomplete(srv, proto, client):
    response, chunks = _chunks(proto)
    srv.script(ServerResponse.stream(proto.sse(chunks[:-1])))  # a clean end, but no finishReason
    with pytest.raises(StreamError) as info:
        client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS}).collect()
    assert "finishReason" in str(info.value)


def test_stream_error_chunk_is_classified(srv, proto, client):
    response, chunks = _chunks(proto)
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    srv.script(ServerResponse.stream(proto.sse(chunks[:1] + [error])))
    with pytest.raises(StreamError) as info:
        client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS}).collect()
    assert info.value.cause_error.code == "UNAVAILABLE"
    assert info.value.cause_error.error_class.value == "transient"


def test_stream_error_before_content_is_retried(srv, proto, client):
    error = {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}
    srv.script(ServerResponse.stream(proto.sse([error])))
    res = client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS}).collect()
    assert res.text and res.attempts == 2


def test_stream_safety_stop_keeps_the_partial_text(srv, proto, client):
    response, chunks = _chunks(proto)
    srv.script(ServerResponse.stream(proto.sse(chunks[:1] + [SAFETY_STOP])))
    with pytest.raises(StreamError) as info:
        client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS}).collect()
    assert isinstance(info.value.cause_error, ContentFiltered)
    assert info.value.partial_text == chunks[0]["candidates"][0]["content"]["parts"][0]["text"]


def test_stream_malformed_json_raises(srv, proto, client):
    response, chunks = _chunks(proto)
    srv.script(ServerResponse.stream(proto.sse(chunks[:1]) + [b"data: {\"candidates\": [\n\n"]))
    with pytest.raises(StreamError) as info:
        client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS}).collect()
    assert info.value.cause_error.code == "malformed_stream"


def test_server_answers_a_json_array_without_alt_sse(srv):
    import requests

    r = requests.post(srv.url + f"/v1beta/models/{MODEL}:streamGenerateContent",
                      json={"contents": CONTENTS}, headers={"x-goog-api-key": "test-key-1"})
    body = r.json()
    assert isinstance(body, list) and body[-1]["candidates"][0]["finishReason"] == "STOP"


def test_a_connection_lost_after_the_finish_chunk_is_not_an_error(srv, proto, client):
    response, chunks = _chunks(proto)
    parts = proto.sse(chunks)
    srv.script(ServerResponse.stream(iter_chunks(parts, cut_after=len(parts))))
    res = client.stream("gemini", "chat", {"model": MODEL, "contents": CONTENTS}).collect()
    assert res.text == response["candidates"][0]["content"]["parts"][0]["text"]
    assert res.finish_reason == "STOP"


def test_a_json_array_stream_without_alt_sse_is_joined_into_one_chunk(srv, client):
    # streamGenerateContent without alt=sse answers the stream's pieces as one JSON array.
    pieces = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                         "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
         "modelVersion": MODEL},
    ]
    srv.script(ServerResponse.json(pieces))
    stream = client.stream("gemini", "generate", {"model": MODEL, "contents": CONTENTS})
    chunks = list(stream)
    res = stream.collect()
    assert len(chunks) == 1 and len(srv.requests) == 1
    assert (res.text, res.usage.total_tokens, res.finish_reason) == ("Hello", 5, "STOP")
