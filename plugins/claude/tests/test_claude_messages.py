"""The claude backend over real HTTP against ClaudeServer: messages, tools, streaming,
count_tokens and models, each with the exact request it must send."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py import Client
from ipfs_accelerate_py.errors import NotFound, StreamError
from ipfs_accelerate_py.server import ServerResponse, iter_chunks
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_claude.server import ClaudeServer

MODEL = "claude-sim-haiku"
USER = [{"role": "user", "content": "Why queue requests?"}]


@pytest.fixture()
def proto() -> ClaudeServer:
    return ClaudeServer(seed=7)


@pytest.fixture()
def srv(proto):
    server = LocalServer(proto)
    yield server
    server.close()


def make_client(srv, options=None, attempts=3) -> Client:
    return testing.make_client("claude", srv.url, attempts=attempts, base_delay=0.01,
                               max_delay=0.05, options=options or {})


@pytest.fixture()
def client(srv):
    c = make_client(srv)
    yield c
    c.close()


def test_messages_sends_the_exact_request_and_parses_the_message(srv, client):
    res = client.call("claude", "messages", {"model": MODEL, "max_tokens": 64, "messages": USER,
                                             "temperature": 0.2, "metadata": {"user_id": "u-1"}})
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert req.header("x-api-key") == "test-key-1"
    assert req.header("anthropic-version") == "2023-06-01"
    assert req.header("content-type") == "application/json"
    assert req.header("authorization") is None
    assert req.json() == {"model": MODEL, "max_tokens": 64, "messages": USER,
                          "temperature": 0.2, "metadata": {"user_id": "u-1"}}
    assert res.text and res.finish_reason == "end_turn"
    assert res.model == MODEL
    raw = res.raw
    assert res.usage.prompt_tokens == raw["usage"]["input_tokens"]
    assert res.usage.completion_tokens == raw["usage"]["output_tokens"]
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens
    assert res.provider_request_id.startswith("req_")  # the provider's request-id header
    assert res.backend == "claude" and res.key_id


def test_chat_alias_hoists_system_messages_and_defaults_max_tokens(srv, client):
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    res = client.call("claude", "chat", {"model": MODEL, "messages": messages})
    body = srv.last.json()
    assert srv.last.path == "/v1/messages"
    assert body == {"model": MODEL, "messages": USER, "system": "Be brief.", "max_tokens": 1024}
    assert res.text


def test_system_blocks_are_merged_with_an_existing_system_field(srv, client):
    messages = [{"role": "system", "content": [{"type": "text", "text": "B"}]}, *USER]
    client.call("claude", "chat", {"model": MODEL, "messages": messages, "system": "A",
                                   "max_tokens": 10})
    assert srv.last.json()["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]


def test_options_set_version_beta_and_default_max_tokens(srv):
    with make_client(srv, {"anthropic_version": "2024-01-01", "anthropic_beta": ["a-1", "b-2"],
                           "max_tokens": 77}) as c:
        c.call("claude", "messages", {"model": MODEL, "messages": USER})
    assert srv.last.header("anthropic-version") == "2024-01-01"
    assert srv.last.header("anthropic-beta") == "a-1,b-2"
    assert srv.last.json()["max_tokens"] == 77


TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                            "days": {"type": "integer"}},
                           "required": ["city"]}}]


def test_tool_use_blocks_become_tool_calls(srv, client):
    payload = {"model": MODEL, "max_tokens": 200, "messages": USER, "tools": TOOLS,
               "tool_choice": {"type": "tool", "name": "get_weather"}}
    res = client.call("claude", "messages", payload)
    assert srv.last.json()["tools"] == TOOLS
    assert srv.last.json()["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert res.finish_reason == "tool_use"
    (call,) = res.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert json.loads(call.arguments) == {"city": "example", "days": 1}

    # Send the tool_result back: the model answers with text.
    follow = USER + [{"role": "assistant", "content": res.raw["content"]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                   "content": "sunny"}]}]
    res2 = client.call("claude", "messages", {**payload, "messages": follow,
                                              "tool_choice": {"type": "auto"}})
    assert srv.last.json()["messages"] == follow
    assert res2.tool_calls == () and res2.text and res2.finish_reason == "end_turn"


def test_stop_sequences_are_passed_through_and_reported(srv, proto, client):
    full = client.call("claude", "messages", {"model": MODEL, "max_tokens": 100, "messages": USER})
    stop = full.text.split(" ")[2]
    res = client.call("claude", "messages", {"model": MODEL, "max_tokens": 100, "messages": USER,
                                             "stop_sequences": [stop]})
    assert srv.last.json()["stop_sequences"] == [stop]
    assert res.finish_reason == "stop_sequence"
    assert res.raw["stop_sequence"] == stop
    assert full.text.startswith(res.text) and stop not in res.text


def test_max_tokens_reached(client):
    res = client.call("claude", "messages", {"model": MODEL, "max_tokens": 2, "messages": USER})
    assert res.finish_reason == "max_tokens" and len(res.text.split()) == 2


# ---------------------------------------------------------------------------- streaming
def test_stream_yields_text_usage_and_stop_reason(srv, client):
    payload = {"model": MODEL, "max_tokens": 100, "messages": USER}
    whole = client.call("claude", "messages", payload)
    stream = client.stream("claude", "messages", payload)
    chunks = list(stream)
    req = srv.last
    assert req.json() == {**payload, "stream": True}
    assert req.header("accept") == "text/event-stream"
    assert "".join(c.text for c in chunks) == whole.text
    assert stream.finish_reason == "end_turn"
    assert stream.usage.prompt_tokens == whole.usage.prompt_tokens
    assert stream.usage.completion_tokens == whole.usage.completion_tokens
    assert stream.model == MODEL


def test_chat_streams_too(client):
    res = client.stream("claude", "chat", {"model": MODEL, "messages": USER}).collect()
    assert res.text and res.finish_reason == "end_turn"


def test_stream_assembles_tool_calls_from_input_json_deltas(client):
    res = client.stream("claude", "messages", {
        "model": MODEL, "max_tokens": 100, "messages": USER, "tools": TOOLS,
        "tool_choice": {"type": "any"}}).collect()
    (call,) = res.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert json.loads(call.arguments) == {"city": "example", "days": 1}
    assert res.finish_reason == "tool_use"


def _events(proto: ClaudeServer, text_words: int = 12):
    message = proto.generate({"model": MODEL, "max_tokens": text_words, "messages": USER})
    return message, proto.stream_events(message)


def test_stream_ignores_ping_and_unknown_events(srv, proto, client):
    message, events = _events(proto)
    extra = [b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
             b"event: future_thing\ndata: {\"type\": \"future_thing\", \"x\": 1}\n\n",
             b": a comment line\n\n"]
    srv.script(ServerResponse.stream(events[:3] + extra + events[3:]))
    res = client.stream("claude", "messages", {"model": MODEL, "messages": USER}).collect()
    assert res.text == message["content"][0]["text"]


def test_stream_cut_midway_raises_with_partial_text(srv, proto, client):
    message, events = _events(proto)
    srv.script(ServerResponse.stream(iter_chunks(events, cut_after=5)))  # start, ping, block, 2 deltas
    stream = client.stream("claude", "messages", {"model": MODEL, "messages": USER})
    with pytest.raises(StreamError) as info:
        stream.collect()
    partial = info.value.partial_text
    assert partial and message["content"][0]["text"].startswith(partial)
    assert partial != message["content"][0]["text"]


def test_stream_error_event_after_content_is_classified(srv, proto, client):
    message, events = _events(proto)
    srv.script(ServerResponse.stream(events[:5] + [proto.error_event()]))
    stream = client.stream("claude", "messages", {"model": MODEL, "messages": USER})
    with pytest.raises(StreamError) as info:
        stream.collect()
    cause = info.value.cause_error
    assert cause is not None and cause.error_class.value == "transient"
    assert cause.code == "overloaded_error"
    assert info.value.partial_text


def test_stream_error_event_before_content_is_retried(srv, proto, client):
    message, events = _events(proto)
    srv.script(ServerResponse.stream(events[:2] + [proto.error_event()]))
    stream = client.stream("claude", "messages", {"model": MODEL, "max_tokens": 12, "messages": USER})
    res = stream.collect()
    assert res.text == message["content"][0]["text"]
    assert res.attempts == 2 and len(srv.requests) == 2


def test_stream_without_message_stop_is_truncated(srv, proto, client):
    message, events = _events(proto)
    srv.script(ServerResponse.stream(events[:-1]))  # everything but message_stop
    stream = client.stream("claude", "messages", {"model": MODEL, "messages": USER})
    with pytest.raises(StreamError) as info:
        stream.collect()
    assert "message_stop" in str(info.value)
    assert info.value.partial_text == message["content"][0]["text"]


def test_stream_with_malformed_json_raises(srv, proto, client):
    message, events = _events(proto)
    srv.script(ServerResponse.stream(events[:5] + [b"event: content_block_delta\ndata: {\"type\n\n"]))
    stream = client.stream("claude", "messages", {"model": MODEL, "messages": USER})
    with pytest.raises(StreamError) as info:
        stream.collect()
    assert info.value.cause_error is not None and info.value.cause_error.code == "malformed_stream"


# ---------------------------------------------------------------------------- other operations
def test_count_tokens_sends_only_accepted_fields(srv, client):
    res = client.call("claude", "count_tokens", {
        "model": MODEL, "messages": [{"role": "system", "content": "S"}, *USER], "tools": TOOLS,
        "max_tokens": 50, "temperature": 0.5})
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v1/messages/count_tokens")
    assert req.header("x-api-key") == "test-key-1"
    assert req.json() == {"model": MODEL, "messages": USER, "system": "S", "tools": TOOLS}
    assert isinstance(res.data, int) and res.data > 0
    assert res.usage.prompt_tokens == res.data


def test_models_lists_one_page_from_the_api(srv, proto, client):
    res = client.call("claude", "models", {"limit": 1})
    req = srv.last
    assert (req.method, req.path, req.arg("limit")) == ("GET", "/v1/models", "1")
    assert req.header("x-api-key") == "test-key-1" and req.header("anthropic-version")
    assert [m["id"] for m in res.data] == proto.models[:1]
    assert res.raw["has_more"] is True
    rest = client.call("claude", "models", {"after_id": res.raw["last_id"]})
    assert srv.last.arg("after_id") == proto.models[0]
    assert [m["id"] for m in rest.data] == proto.models[1:]


def test_model_describes_one_model(srv, proto, client):
    res = client.call("claude", "model", {"model": proto.models[1]})
    assert (srv.last.method, srv.last.path) == ("GET", f"/v1/models/{proto.models[1]}")
    assert res.data["id"] == proto.models[1] and res.model == proto.models[1]
    with pytest.raises(NotFound) as info:
        client.call("claude", "model", {"model": "no-such-model"})
    assert info.value.code == "not_found_error"


def test_a_connection_lost_after_message_stop_is_not_an_error(srv, proto, client):
    message, events = _events(proto)
    srv.script(ServerResponse.stream(iter_chunks(events, cut_after=len(events))))
    res = client.stream("claude", "messages", {"model": MODEL, "messages": USER}).collect()
    assert res.text == message["content"][0]["text"] and res.finish_reason == "max_tokens"


def test_thinking_blocks_are_not_part_of_the_text(srv, proto, client):
    message, events = _events(proto)
    thinking = [
        b'event: content_block_start\ndata: {"type":"content_block_start","index":5,'
        b'"content_block":{"type":"thinking","thinking":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":5,'
        b'"delta":{"type":"thinking_delta","thinking":"hmm"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":5,'
        b'"delta":{"type":"signature_delta","signature":"sig"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":5}\n\n']
    srv.script(ServerResponse.stream(events[:1] + thinking + events[1:]))
    res = client.stream("claude", "messages", {"model": MODEL, "messages": USER}).collect()
    assert res.text == message["content"][0]["text"]
