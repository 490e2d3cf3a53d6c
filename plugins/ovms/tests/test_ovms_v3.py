"""OVMS's OpenAI-compatible /v3 API through the pipeline, over real HTTP."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.errors import (
    CountMismatch,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    StreamError,
    TransientError,
)
from ipfs_accelerate_py.server import ServerResponse, iter_chunks
from ipfs_accelerate_sim.testing import LocalServer, fake_key
from ipfs_accelerate_py.wire.sse import format_sse
from ipfs_accelerate_ovms.server import OvmsServer

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "hello"}]


def sse(*objs: object) -> list[bytes]:
    return [format_sse(o) for o in objs]


def chunk(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
            "created": 1, "model": "llama3", "object": "chat.completion.chunk"}


def test_chat_sends_the_exact_body_and_parses_the_answer(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        res = client.call("ovms", "chat", {"model": "llama3", "messages": MESSAGES,
                                           "max_tokens": 3, "top_k": 1, "stream": True})
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v3/chat/completions")
    assert req.header("authorization") == f"Bearer {fake_key(1)}"
    # not streaming: a stray "stream" in the payload is dropped, the rest goes as given
    assert json.loads(req.body) == {"model": "llama3", "messages": MESSAGES, "max_tokens": 3,
                                    "top_k": 1}
    assert res.text == " ".join(res.text.split()) and len(res.text.split()) == 3
    assert res.finish_reason == "length"
    assert (res.usage.prompt_tokens, res.usage.completion_tokens) == (6, 3)
    assert res.model == "llama3" and res.backend == "ovms"


def test_chat_stream_matches_the_unary_answer(srv: LocalServer, make_client) -> None:
    payload = {"model": "llama3", "messages": MESSAGES, "stream_options": {"include_usage": True}}
    with make_client(srv.url) as client:
        whole = client.call("ovms", "chat", payload)
        stream = client.stream("ovms", "chat", payload)
        chunks = list(stream)
        streamed = stream.collect()
    body = json.loads(srv.last.body)
    assert body["stream"] is True and srv.last.header("accept") == "text/event-stream"
    assert streamed.text == whole.text and len(chunks) > 3
    assert streamed.finish_reason == "stop"
    assert streamed.usage == whole.usage


def test_tool_calls_unary_and_streamed(srv: LocalServer, make_client) -> None:
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    payload = {"model": "llama3", "messages": MESSAGES, "tools": tools, "tool_choice": "auto"}
    with make_client(srv.url) as client:
        res = client.call("ovms", "chat", payload)
        streamed = client.stream("ovms", "chat", payload).collect()
    (call,) = res.tool_calls
    assert call.name == "search" and json.loads(call.arguments) == {"query": "hello"}
    assert res.finish_reason == "tool_calls"
    assert streamed.tool_calls == res.tool_calls


def test_stream_cut_midway_keeps_the_partial_text(srv: LocalServer, make_client) -> None:
    parts = sse(chunk("one "), chunk("two "), chunk("three", "stop")) + [b"data: [DONE]\n\n"]
    srv.script(ServerResponse.stream(iter_chunks(parts, cut_after=2)))
    with make_client(srv.url) as client:
        stream = client.stream("ovms", "chat", {"model": "llama3", "messages": MESSAGES})
        with pytest.raises(StreamError) as info:
            list(stream)
    assert info.value.partial_text == "one two "


def test_stream_without_done_is_truncated(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.stream(sse(chunk("one "), chunk("two", "stop"))))
    with make_client(srv.url) as client:
        with pytest.raises(StreamError, match="truncated") as info:
            client.stream("ovms", "chat", {"model": "llama3", "messages": MESSAGES}).collect()
    assert info.value.partial_text == "one two"


def test_error_event_mid_stream(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.stream(sse(chunk("one "), {"error": "Generation failed"})))
    with make_client(srv.url) as client:
        with pytest.raises(StreamError) as info:
            client.stream("ovms", "chat", {"model": "llama3", "messages": MESSAGES}).collect()
    assert info.value.partial_text == "one "
    assert isinstance(info.value.cause_error, TransientError)
    assert info.value.cause_error.message == "Generation failed"


def test_malformed_event_mid_stream(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.stream(sse(chunk("one ")) + [b"data: {\"choices\": [\n\n"]))
    with make_client(srv.url) as client:
        with pytest.raises(StreamError) as info:
            client.stream("ovms", "chat", {"model": "llama3", "messages": MESSAGES}).collect()
    assert info.value.partial_text == "one "
    assert info.value.cause_error.code == "malformed_response"


def test_error_before_the_first_chunk_is_classified(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.stream(sse({"error": "Generation failed"})))
    with make_client(srv.url) as client:
        with pytest.raises(TransientError, match="Generation failed"):
            client.stream("ovms", "chat", {"model": "llama3", "messages": MESSAGES})


def test_completions_unary_and_streamed(srv: LocalServer, make_client) -> None:
    payload = {"model": "llama3", "prompt": "This is a test", "max_tokens": 5}
    with make_client(srv.url) as client:
        res = client.call("ovms", "completions", payload)
        streamed = client.stream("ovms", "completions", payload).collect()
        with pytest.raises(InvalidRequest, match="string 'prompt'"):
            client.call("ovms", "completions", {"model": "llama3", "prompt": ["a", "b"]})
    assert srv.requests[0].path == "/v3/completions"
    assert json.loads(srv.requests[0].body) == payload
    assert res.text and streamed.text == res.text
    assert res.usage.completion_tokens == len(res.text.split())


def test_embeddings_in_input_order(srv: LocalServer, make_client) -> None:
    texts = ["This is a test", "another one", "third"]
    with make_client(srv.url) as client:
        res = client.call("ovms", "embeddings", {"model": "gte-large", "input": texts,
                                                 "encoding_format": "float"})
    assert srv.last.path == "/v3/embeddings"
    assert json.loads(srv.last.body) == {"model": "gte-large", "input": texts,
                                         "encoding_format": "float"}
    server = OvmsServer(seed=0)
    assert res.data == [server.vector("gte-large", t) for t in texts]


def test_embeddings_count_mismatch_is_an_error(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.json({"object": "list", "data": [
        {"object": "embedding", "embedding": [0.1], "index": 0}]}))
    with make_client(srv.url) as client:
        with pytest.raises(CountMismatch, match="expected 2 results for 2 inputs, received 1"):
            client.call("ovms", "embeddings", {"model": "gte-large", "input": ["a", "b"]})


def test_rerank(srv: LocalServer) -> None:
    from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, RetryPolicy

    docs = ["Welcome home", "Farewell", "hello there welcome"]
    # The breaker stays out of it: this test is about each answer's own check.
    with Client([BackendConfig(name="ovms", base_url=srv.url)],
                ClientConfig(retry=RetryPolicy(max_attempts=3, base_delay=0.01),
                             breaker=BreakerPolicy(minimum_calls=1000, window_size=1000))) as client:
        res = client.call("ovms", "rerank", {"model": "bge-reranker", "query": "hello welcome",
                                             "documents": docs, "top_n": 2, "return_documents": True})
        every = client.call("ovms", "rerank", {"model": "bge-reranker", "query": "hello welcome",
                                               "documents": docs})
        assert sorted(h["index"] for h in every.data) == [0, 1, 2]  # no top_n: every document
        wrong = [[{"index": 5, "relevance_score": 0.1}, {"index": 0, "relevance_score": 0.0},
                  {"index": 1, "relevance_score": 0.0}],                      # a foreign index
                 [{"index": 0, "relevance_score": 0.1}, {"index": 0, "relevance_score": 0.0},
                  {"index": 1, "relevance_score": 0.0}],                      # one twice
                 [{"index": 0, "relevance_score": 0.1}]]                      # short
        for results in wrong:
            srv.script(ServerResponse.json({"results": results}))
            with pytest.raises(CountMismatch):
                client.call("ovms", "rerank", {"model": "bge-reranker", "query": "q", "documents": docs})
    assert len(srv.requests) == 2 + len(wrong)  # none retried
    assert srv.requests[0].path == "/v3/rerank"
    assert [h["index"] for h in res.data] == [2, 0]
    assert res.data[0] == {"index": 2, "relevance_score": OvmsServer.relevance("hello welcome", docs[2]),
                           "document": docs[2]}


def test_v3_errors(srv: LocalServer, make_client) -> None:
    long_prompt = " ".join(["word"] * 600)
    with make_client(srv.url, attempts=3) as client:
        with pytest.raises(NotFound, match="graph definition"):
            client.call("ovms", "chat", {"model": "nope", "messages": MESSAGES})
        with pytest.raises(ContextTooLong):
            client.call("ovms", "chat", {"model": "llama3",
                                         "messages": [{"role": "user", "content": long_prompt}]})
        with pytest.raises(InvalidRequest, match="no model version"):
            client.call("ovms", "chat", {"model": "llama3", "version": 2, "messages": MESSAGES})
    assert len(srv.requests) == 2  # neither was retried; the third never left


def test_default_model_fills_v3_bodies(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, options={"model": "gte-large"}) as client:
        client.call("ovms", "embeddings", {"input": "x"})
    assert json.loads(srv.last.body) == {"input": "x", "model": "gte-large"}


def test_openai_routes_can_have_their_own_base_url(make_client) -> None:
    # OVMS behind a proxy: KServe routes on one URL, the OpenAI-compatible ones on another.
    with LocalServer(OvmsServer()) as kserve, LocalServer(OvmsServer()) as openai_side:
        with make_client(kserve.url, options={"openai_base_url": openai_side.url + "/v3/"}) as client:
            res = client.call("ovms", "chat", {"model": "llama3", "max_tokens": 3,
                                               "messages": [{"role": "user", "content": "hi"}]})
            assert res.text
            client.call("ovms", "embeddings", {"model": "gte-large", "input": ["a"]})
            client.call("ovms", "live", {})
        assert [(r.method, r.path) for r in openai_side.requests] == [
            ("POST", "/v3/chat/completions"), ("POST", "/v3/embeddings")]
        assert [(r.method, r.path) for r in kserve.requests] == [("GET", "/v2/health/live")]


def test_openai_base_url_defaults_to_v3_and_reads_the_environment(monkeypatch) -> None:
    from ipfs_accelerate_py.config import BackendConfig
    from ipfs_accelerate_ovms.backend import OvmsBackend

    assert OvmsBackend(BackendConfig(name="ovms", base_url="http://h:9000/")).openai_base_url == \
        "http://h:9000/v3"
    monkeypatch.setenv("OVMS_OPENAI_API_URL", "http://h:8000/v3")
    assert OvmsBackend(BackendConfig(name="ovms", base_url="http://h:9000")).openai_base_url == \
        "http://h:8000/v3"
