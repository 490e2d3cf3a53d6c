"""The hf_tgi backend through the pipeline, over real HTTP against the TGI protocol server."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
import requests

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig
from ipfs_accelerate_py.errors import (
    AuthError,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    StreamError,
    TransientError,
)
from ipfs_accelerate_py.server import ServerRequest, ServerResponse, iter_chunks
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer, fake_key
from ipfs_accelerate_py.wire.sse import format_sse
from ipfs_accelerate_hf_tgi.backend import TGIBackend
from ipfs_accelerate_hf_tgi.server import TGIServer

HF_ENV = ("HF_API_KEY", "HF_API_TOKEN", "HF_TOKEN", "HF_TGI_API_URL", "HF_TGI_ENDPOINT")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]


@pytest.fixture(autouse=True)
def _no_hf_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HF_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv() -> Iterator[LocalServer]:
    with LocalServer(TGIServer(seed=0)) as server:
        yield server


def make_client(url: str, *, keys: Any = (fake_key(1),), attempts: int = 1, **backend: Any) -> Client:
    return testing.make_client("hf_tgi", url, keys=keys, attempts=attempts, concurrency=2,
                               base_delay=0.01, max_delay=0.05, **backend)


def sent_json(req: ServerRequest) -> Any:
    return json.loads(req.body)


def native_events(srv: LocalServer, prompt: str, **params: Any) -> list[bytes]:
    """The SSE frames the protocol server sends for this prompt."""
    r = requests.post(srv.url + "/generate_stream", json={"inputs": prompt, "parameters": params},
                      timeout=5)
    return [f.encode() + b"\n\n" for f in r.text.split("\n\n") if f.strip()]


# ---------------------------------------------------------------------- generate
def test_generate_sends_the_exact_request_and_parses_details(srv: LocalServer) -> None:
    payload = {"inputs": "My name is Olivier and I",
               "parameters": {"max_new_tokens": 20, "details": True, "temperature": 0.5,
                              "stop": ["photographer"]}}
    with make_client(srv.url) as client:
        res = client.call("hf_tgi", "generate", payload)
    req = srv.last
    assert (req.method, req.path) == ("POST", "/generate")
    assert req.header("authorization") == "Bearer test-key-1"
    assert req.header("content-type") == "application/json"
    assert sent_json(req) == payload
    details = res.data
    assert res.text == "".join(t["text"] for t in details["tokens"] if not t["special"])
    assert res.text and res.finish_reason == details["finish_reason"] == "eos_token"
    assert res.usage.prompt_tokens == 6  # x-prompt-tokens: the stand-in counts words
    assert res.usage.completion_tokens == details["generated_tokens"]


def test_generate_length_finish_and_no_details(srv: LocalServer) -> None:
    with make_client(srv.url, keys=()) as client:
        res = client.call("hf_tgi", "generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}})
    assert srv.last.header("authorization") is None
    assert res.data is None and res.finish_reason is None
    assert len(res.text.split()) == 2 and res.usage.completion_tokens == 2


def test_serverless_list_answer_is_accepted(srv: LocalServer) -> None:
    srv.script(ServerResponse.json([{"generated_text": "a list answer"}]))
    with make_client(srv.url) as client:
        assert client.call("hf_tgi", "generate", {"inputs": "x"}).text == "a list answer"


def test_generate_stream_tokens_and_final_event(srv: LocalServer) -> None:
    params = {"max_new_tokens": 50, "details": True}
    full = requests.post(srv.url + "/generate", json={"inputs": "Tell me", "parameters": params},
                         timeout=5).json()
    srv.clear()
    with make_client(srv.url) as client:
        stream = client.stream("hf_tgi", "generate", {"inputs": "Tell me", "parameters": params})
        chunks = list(stream)
    req = srv.last
    assert (req.method, req.path) == ("POST", "/generate_stream")
    assert req.header("accept") == "text/event-stream"
    assert sent_json(req) == {"inputs": "Tell me", "parameters": params}
    assert "".join(c.text for c in chunks) == full["generated_text"] == stream.text
    assert "</s>" not in stream.text  # special tokens are not text
    assert chunks[-1].finish_reason == "eos_token" and stream.finish_reason == "eos_token"
    assert stream.usage.prompt_tokens == 2
    assert stream.usage.completion_tokens == full["details"]["generated_tokens"]
    assert chunks[0].raw["token"]["id"] == full["details"]["tokens"][0]["id"]


def test_generate_stream_cut_midway_keeps_the_partial_text(srv: LocalServer) -> None:
    frames = native_events(srv, "Tell me")
    srv.script(ServerResponse.stream(iter_chunks(frames, cut_after=3)))
    with make_client(srv.url) as client:
        stream = client.stream("hf_tgi", "generate", {"inputs": "Tell me"})
        with pytest.raises(StreamError) as err:
            stream.collect()
    expected = "".join(json.loads(f[6:])["token"]["text"] for f in frames[:3])
    assert err.value.partial_text == expected


def test_generate_stream_without_final_event_is_incomplete(srv: LocalServer) -> None:
    frames = native_events(srv, "Tell me")
    srv.script(ServerResponse.stream(frames[:-1]))  # a clean end, but no generated_text event
    with make_client(srv.url) as client:
        stream = client.stream("hf_tgi", "generate", {"inputs": "Tell me"})
        with pytest.raises(StreamError) as err:
            stream.collect()
    assert "truncated" in str(err.value) and err.value.partial_text


def test_generate_stream_error_event_midway(srv: LocalServer) -> None:
    frames = native_events(srv, "Tell me")[:2] + [
        format_sse({"error": "Request failed during generation: CUDA OOM",
                    "error_type": "generation"})]
    srv.script(ServerResponse.stream(frames))
    with make_client(srv.url) as client:
        stream = client.stream("hf_tgi", "generate", {"inputs": "Tell me"})
        with pytest.raises(StreamError) as err:
            stream.collect()
    assert isinstance(err.value.cause_error, TransientError)
    assert err.value.cause_error.code == "generation"
    assert "CUDA OOM" in str(err.value)


def test_generate_stream_validation_error_event_is_not_retried(srv: LocalServer) -> None:
    with make_client(srv.url, attempts=3) as client:
        with pytest.raises(InvalidRequest) as bad:
            client.stream("hf_tgi", "generate", {"inputs": "x", "parameters": {"temperature": 0}})
        assert "temperature" in bad.value.message and bad.value.code == "validation"
        with pytest.raises(ContextTooLong):
            client.stream("hf_tgi", "generate", {"inputs": "word " * 1500})
    assert len(srv.requests) == 2
    assert srv.requests[0].path == "/generate_stream"


def test_generate_stream_malformed_event_and_overloaded(srv: LocalServer) -> None:
    frames = native_events(srv, "Tell me")[:1] + [b"data: {not json\n\n"]
    srv.script(ServerResponse.stream(frames))
    with make_client(srv.url) as client:
        stream = client.stream("hf_tgi", "generate", {"inputs": "Tell me"})
        with pytest.raises(StreamError) as err:
            stream.collect()
    assert err.value.cause_error.code == "malformed_response"
    srv.script(ServerResponse.stream([format_sse({"error": "Model is overloaded",
                                                  "error_type": "overloaded"})]))
    with make_client(srv.url, attempts=2) as client:
        res = client.stream("hf_tgi", "generate", {"inputs": "Tell me"}).collect()
    assert res.text and res.attempts == 2


# ---------------------------------------------------------------------- chat
def test_chat_messages_api(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        res = client.call("hf_tgi", "chat", {"messages": MESSAGES, "max_tokens": 30})
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert sent_json(req) == {"model": "tgi", "messages": MESSAGES, "max_tokens": 30}
    assert res.text and res.finish_reason == "stop"
    assert res.model == "sim/tgi-model"
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens


def test_chat_stream_with_usage(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        plain = client.call("hf_tgi", "chat", {"messages": MESSAGES, "model": "tgi"})
        stream = client.stream("hf_tgi", "chat", {"messages": MESSAGES, "model": "tgi"})
        res = stream.collect()
    assert sent_json(srv.last) == {"messages": MESSAGES, "model": "tgi", "stream": True,
                                   "stream_options": {"include_usage": True}}
    assert srv.last.header("accept") == "text/event-stream"
    assert res.text == plain.text and res.finish_reason == "stop"
    assert res.usage == plain.usage


def test_chat_stream_cut_and_error_events(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(ContextTooLong):  # validation error as the only event of a 200
            client.stream("hf_tgi", "chat", {"messages": [{"role": "user",
                                                           "content": "word " * 1500}]})
        frames = requests.post(srv.url + "/v1/chat/completions", timeout=5, json={
            "messages": MESSAGES, "stream": True}).text.split("\n\n")
        frames = [f.encode() + b"\n\n" for f in frames if f.strip()]
        whole = client.stream("hf_tgi", "chat", {"messages": MESSAGES}).collect()
        # older TGI ends after the finish_reason chunk without [DONE]: complete
        srv.script(ServerResponse.stream(frames[:-1]))
        assert client.stream("hf_tgi", "chat", {"messages": MESSAGES}).collect().text == whole.text
        # a clean end before any finish_reason is not
        srv.script(ServerResponse.stream(frames[:4]))
        with pytest.raises(StreamError) as err:
            client.stream("hf_tgi", "chat", {"messages": MESSAGES}).collect()
        assert "truncated" in str(err.value) and whole.text.startswith(err.value.partial_text)
        srv.script(ServerResponse.stream(frames[:3] + [format_sse(
            {"error": "Request failed during generation", "error_type": "generation"})]))
        with pytest.raises(StreamError) as err:
            client.stream("hf_tgi", "chat", {"messages": MESSAGES}).collect()
        assert isinstance(err.value.cause_error, TransientError) and err.value.partial_text


# ---------------------------------------------------------------------- info, limits
def test_info_teaches_the_limits_and_long_prompts_fail_early(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        long_prompt = "x" * 20000  # over 8 characters per token for 1024 tokens
        client.call("hf_tgi", "generate", {"inputs": "short"})
        info = client.call("hf_tgi", "info", {})
        assert (srv.last.method, srv.last.path) == ("GET", "/info")
        assert info.data["max_input_tokens"] == 1024 and info.model == "sim/tgi-model"
        before = len(srv.requests)
        with pytest.raises(ContextTooLong):
            client.submit("hf_tgi", "generate", {"inputs": long_prompt})
        with pytest.raises(ContextTooLong):
            client.submit("hf_tgi", "chat", {"messages": [{"role": "user", "content": long_prompt}]})
        with pytest.raises(ContextTooLong):  # fits alone, not with 2000 new tokens
            client.submit("hf_tgi", "generate", {"inputs": "y" * 800,
                                                 "parameters": {"max_new_tokens": 2000}})
        assert len(srv.requests) == before  # nothing was sent
        assert client.call("hf_tgi", "generate", {"inputs": "fits"}).text


def test_configured_limits_need_no_info(srv: LocalServer) -> None:
    with make_client(srv.url, options={"max_input_tokens": 10, "chars_per_token": 4}) as client:
        with pytest.raises(ContextTooLong):
            client.submit("hf_tgi", "generate", {"inputs": "z" * 41})
        assert client.call("hf_tgi", "generate", {"inputs": "z" * 40}).text
    # without limits nothing is rejected early: the server decides
    with make_client(srv.url) as client:
        with pytest.raises(ContextTooLong) as err:
            client.call("hf_tgi", "generate", {"inputs": "word " * 1500})
    assert err.value.status == 422 and "must have less than 1024 tokens" in err.value.message


def test_tokenize_and_health(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        toks = client.call("hf_tgi", "tokenize", {"inputs": "Hello world"})
        assert (srv.last.path, sent_json(srv.last)) == ("/tokenize", {"inputs": "Hello world"})
        assert [t["text"] for t in toks.data] == ["Hello", "world"]
        assert client.call("hf_tgi", "health", {}).data["healthy"] is True
        srv.protocol.healthy = False
        with pytest.raises(TransientError) as err:
            client.call("hf_tgi", "health", {})
    assert err.value.status == 503 and err.value.code == "healthcheck"


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("status,body,cls", [
    (422, {"error": "Input validation error: `top_p` must be > 0.0 and < 1.0",
           "error_type": "validation"}, InvalidRequest),
    (422, {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. "
                    "Given: 2000 `inputs` tokens and 100 `max_new_tokens`",
           "error_type": "validation"}, ContextTooLong),
    (424, {"error": "Request failed during generation", "error_type": "generation"}, TransientError),
    (503, {"error": "Model sim/x is currently loading", "estimated_time": 20.0}, TransientError),
    (500, {"error": "Incomplete generation", "error_type": "incomplete_generation"}, TransientError),
    (429, {"error": "Model is overloaded", "error_type": "overloaded"}, RateLimited),
    (404, {"error": "No fast tokenizer available"}, NotFound),
    (400, {"error": {"message": "bad", "type": "invalid_request_error",
                     "code": "context_length_exceeded"}}, ContextTooLong),
])
def test_error_answers(srv: LocalServer, status: int, body: Any, cls: type) -> None:
    srv.script(ServerResponse.json(body, status))
    with make_client(srv.url) as client:
        with pytest.raises(cls) as err:
            client.call("hf_tgi", "generate", {"inputs": "x"})
    assert type(err.value) is cls and err.value.status == status
    if "estimated_time" in body:
        assert err.value.retry_after == 20.0


def test_real_validation_errors_from_the_server(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest) as err:
            client.call("hf_tgi", "generate", {"inputs": "x", "parameters": {"top_p": 2}})
        assert err.value.code == "validation" and type(err.value) is InvalidRequest
        with pytest.raises(InvalidRequest) as plain:  # axum's text/plain 422
            client.call("hf_tgi", "generate", {"inputs": ["not", "a", "string"]})
        assert "deserialize" in plain.value.message


def test_overloaded_is_retried(srv: LocalServer) -> None:
    srv.script(ServerResponse.json({"error": "Model is overloaded", "error_type": "overloaded"},
                                   429, headers={"retry-after": "0"}))
    with make_client(srv.url, attempts=2) as client:
        res = client.call("hf_tgi", "chat", {"messages": MESSAGES})
    assert res.text and res.attempts == 2 and len(srv.requests) == 2


@pytest.mark.parametrize("response,what", [
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), "HTML"),
    (ServerResponse.text("<!doctype html><p>login</p>", 200, "text/html"), "HTML"),
    (ServerResponse(200, {"Content-Type": "application/json"}, b'{"generated_text": "ab'), "malformed"),
    (ServerResponse(200, {"Content-Type": "application/json"}, b""), "empty"),
    (ServerResponse.json({"text": "wrong shape"}), "generated_text"),
])
def test_broken_answers_are_transient(srv: LocalServer, response: ServerResponse, what: str) -> None:
    srv.script(response)
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as err:
            client.call("hf_tgi", "generate", {"inputs": "x"})
    assert what in str(err.value)


def test_hosted_endpoint_under_a_prefix_with_a_token() -> None:
    tgi = TGIServer(token=fake_key(2))

    def endpoint(req: ServerRequest) -> ServerResponse:
        prefix = "/models/acme/m1"
        if not req.path.startswith(prefix + "/"):
            return ServerResponse.text("<html>Not Found</html>", 404, "text/html")
        return tgi(ServerRequest(req.method, req.path[len(prefix):], req.query, req.headers,
                                 req.body))

    with LocalServer(endpoint) as server:
        with make_client(server.url + "/models/acme/m1", keys=[fake_key(2)]) as client:
            assert client.call("hf_tgi", "chat", {"messages": MESSAGES}).text
            assert server.last.path == "/models/acme/m1/v1/chat/completions"
            assert server.last.header("authorization") == "Bearer test-key-2"
        with make_client(server.url + "/models/acme/m1", keys=[fake_key(1)]) as client:
            with pytest.raises(AuthError) as err:
                client.call("hf_tgi", "generate", {"inputs": "x"})
    assert fake_key(1) not in str(err.value) and fake_key(1) not in repr(err.value)


def test_configuration_sources() -> None:
    assert TGIBackend.keys_from({"hf_api_key": "test-key-5"}, {})[0].reveal() == "test-key-5"
    assert TGIBackend.keys_from({}, {"HF_API_TOKEN": "test-key-6"})[0].reveal() == "test-key-6"
    assert TGIBackend.base_url_from({"hf_tgi_api_url": "http://tgi:3000"}, {}) == "http://tgi:3000"
    assert TGIBackend.base_url_from({}, {"HF_TGI_API_URL": "http://h:1"}) == "http://h:1"
    assert TGIBackend().base_url == "http://localhost:8080"
    b = TGIBackend(BackendConfig("hf_tgi", base_url="https://x.endpoints.huggingface.cloud/"))
    assert b.url("/generate") == "https://x.endpoints.huggingface.cloud/generate"


def test_payload_checks_before_sending(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest):
            client.submit("hf_tgi", "generate", {"parameters": {}})
        with pytest.raises(InvalidRequest):
            client.submit("hf_tgi", "tokenize", {}, stream=True)
        with pytest.raises(InvalidRequest):
            client.submit("hf_tgi", "embed", {"inputs": "x"})
    assert srv.requests == []


# ---------------------------------------------------------------------- completions, models
def test_completions_plain_multi_prompt_and_streamed(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        res = client.call("hf_tgi", "completions", {"prompt": ["Hello there", "x"], "max_tokens": 5})
        assert (srv.last.path, sent_json(srv.last)) == ("/v1/completions", {
            "model": "tgi", "prompt": ["Hello there", "x"], "max_tokens": 5})
        assert [c["index"] for c in res.data] == [0, 1] and res.text == res.data[0]["text"]
        assert res.finish_reason == "length" and res.usage.prompt_tokens == 3
        one = client.call("hf_tgi", "completions", {"prompt": "Hello there", "max_tokens": 5})
        stream = client.stream("hf_tgi", "completions", {"prompt": "Hello there", "max_tokens": 5})
        assert stream.collect().text == one.text and stream.finish_reason == "length"
        assert sent_json(srv.last) == {"model": "tgi", "prompt": "Hello there", "max_tokens": 5,
                                       "stream": True}
        with pytest.raises(InvalidRequest):  # TGI streams one prompt only
            client.stream("hf_tgi", "completions", {"prompt": ["a", "b"]})
        with pytest.raises(ContextTooLong):
            client.stream("hf_tgi", "completions", {"prompt": "word " * 1500})


def test_models_lists_the_served_model(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        res = client.call("hf_tgi", "models", {})
        assert (srv.last.method, srv.last.path) == ("GET", "/v1/models")
        assert [m["id"] for m in res.data] == ["sim/tgi-model"] and res.model == "sim/tgi-model"
        srv.script(ServerResponse.json({"object": "list", "data": [{"id": "a"}, {"id": "b"}]}))
        assert [m["id"] for m in client.call("hf_tgi", "models", {}).data] == ["a", "b"]
        srv.script(ServerResponse.json({"object": "model"}))
        with pytest.raises(TransientError):
            client.call("hf_tgi", "models", {})


def test_html_or_empty_answer_to_a_stream_is_transient(srv: LocalServer) -> None:
    srv.script(ServerResponse.text("<html><body>Gateway</body></html>", 200, "text/html"),
               ServerResponse.stream([], content_type="text/event-stream"))
    with make_client(srv.url) as client:
        for _ in range(2):
            with pytest.raises(TransientError) as err:
                client.stream("hf_tgi", "generate", {"inputs": "x"})
            assert "before its first chunk" in str(err.value)


def test_older_info_field_name_is_understood(srv: LocalServer) -> None:
    srv.script(ServerResponse.json({"model_id": "old", "max_input_length": 10,
                                    "max_total_tokens": 20}))
    with make_client(srv.url) as client:
        client.call("hf_tgi", "info", {})
        with pytest.raises(ContextTooLong):
            client.submit("hf_tgi", "generate", {"inputs": "q" * 81})


def test_base_url_from_the_environment_when_none_is_configured(
        srv: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TGI_API_URL", srv.url)
    with Client([BackendConfig(name="hf_tgi")], ClientConfig(max_concurrency=1)) as client:
        assert client.call("hf_tgi", "health", {}).data["healthy"]
    assert srv.last.path == "/health"
    assert TGIBackend(BackendConfig("hf_tgi", base_url="http://explicit:1")).base_url == \
        "http://explicit:1"
