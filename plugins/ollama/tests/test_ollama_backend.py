"""The ollama backend through the pipeline, over real HTTP against the Ollama protocol server."""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator

import pytest
import requests

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request
from ipfs_accelerate_py.errors import (
    CountMismatch,
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
from ipfs_accelerate_py.wire.ndjson import format_ndjson
from ipfs_accelerate_ollama.backend import OllamaBackend
from ipfs_accelerate_ollama.server import OllamaServer

OLLAMA_ENV = ("OLLAMA_API_KEY", "OLLAMA_API_URL", "OLLAMA_HOST")
MESSAGES = [{"role": "user", "content": "why is the sky blue?"}]


@pytest.fixture(autouse=True)
def _no_ollama_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OLLAMA_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv() -> Iterator[LocalServer]:
    with LocalServer(OllamaServer(seed=0)) as server:
        yield server


def make_client(url: str, *, keys: Any = (), attempts: int = 1, concurrency: int = 2,
                **backend: Any) -> Client:
    return testing.make_client("ollama", url, keys=keys, attempts=attempts, concurrency=concurrency,
                               base_delay=0.01, max_delay=0.05, **backend)


def sent_json(req: ServerRequest) -> Any:
    return json.loads(req.body)


def native_lines(srv: LocalServer, path: str, body: dict[str, Any]) -> list[bytes]:
    r = requests.post(srv.url + path, json=body, timeout=5)
    return [line.encode() + b"\n" for line in r.text.splitlines() if line.strip()]


# ---------------------------------------------------------------------- chat / generate
def test_chat_sends_stream_false_and_parses_the_answer(srv: LocalServer) -> None:
    payload = {"model": "llama3.2", "messages": MESSAGES, "options": {"temperature": 0.2},
               "keep_alive": "10m", "format": "json"}
    with make_client(srv.url) as client:
        res = client.call("ollama", "chat", payload)
    req = srv.last
    assert (req.method, req.path) == ("POST", "/api/chat")
    assert req.header("authorization") is None  # a local server needs no key
    assert req.header("content-type") == "application/json"
    assert sent_json(req) == {**payload, "stream": False}
    assert json.loads(res.text)["response"]  # format: json made the reply a JSON object
    assert res.finish_reason == "stop" and res.model == "llama3.2"
    assert res.usage.prompt_tokens == 8 and res.usage.completion_tokens >= 1
    assert res.data["total_duration"] > 0


def test_chat_stream_ndjson_with_done_terminator(srv: LocalServer) -> None:
    payload = {"model": "llama3.2", "messages": MESSAGES, "options": {"num_predict": 3}}
    with make_client(srv.url) as client:
        plain = client.call("ollama", "chat", payload)
        stream = client.stream("ollama", "chat", payload)
        chunks = list(stream)
    assert sent_json(srv.last) == {**payload, "stream": True}
    assert srv.last.header("accept") == "application/x-ndjson"
    assert stream.text == plain.text and len(plain.text.split()) == 3
    assert chunks[-1].finish_reason == "length" == plain.finish_reason
    assert stream.usage == plain.usage and chunks[-1].raw["done"] is True


def test_chat_tool_calls_and_images_pass_through(srv: LocalServer) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": "weather in Tokyo?", "images": ["aGVsbG8="]}]
    with make_client(srv.url) as client:
        res = client.call("ollama", "chat", {"model": "llama3.2", "messages": messages,
                                             "tools": tools})
        assert sent_json(srv.last)["messages"][0]["images"] == ["aGVsbG8="]
        assert sent_json(srv.last)["tools"] == tools
        (call,) = res.tool_calls
        assert call.name == "get_weather"
        assert json.loads(call.arguments) == {"query": "weather in Tokyo?"}
        assert res.usage.prompt_tokens > 768  # the image was counted
        streamed = client.stream("ollama", "chat", {"model": "llama3.2", "messages": messages,
                                                    "tools": tools}).collect()
    assert streamed.tool_calls == res.tool_calls


def test_generate_plain_and_streamed(srv: LocalServer) -> None:
    payload = {"model": "llama3.2", "prompt": "Why is the sky blue?", "system": "be brief",
               "images": [], "options": {"seed": 7}}
    with make_client(srv.url) as client:
        res = client.call("ollama", "generate", payload)
        assert (srv.last.path, sent_json(srv.last)) == ("/api/generate", {**payload, "stream": False})
        stream = client.stream("ollama", "generate", payload)
        assert stream.collect().text == res.text
    assert res.data["context"] and res.finish_reason == "stop"
    assert stream.usage == res.usage


def test_stream_without_done_is_incomplete(srv: LocalServer) -> None:
    body = {"model": "llama3.2", "messages": MESSAGES, "stream": True}
    lines = native_lines(srv, "/api/chat", body)
    srv.script(ServerResponse.stream(lines[:-1], content_type="application/x-ndjson"))
    with make_client(srv.url) as client:
        stream = client.stream("ollama", "chat", {"model": "llama3.2", "messages": MESSAGES})
        with pytest.raises(StreamError) as err:
            stream.collect()
    assert "truncated" in str(err.value)
    assert err.value.partial_text == "".join(json.loads(l)["message"]["content"] for l in lines[:-1])


def test_stream_cut_midway(srv: LocalServer) -> None:
    lines = native_lines(srv, "/api/generate", {"model": "llama3.2", "prompt": "hi"})
    srv.script(ServerResponse.stream(iter_chunks(lines, cut_after=2),
                                     content_type="application/x-ndjson"))
    with make_client(srv.url) as client:
        stream = client.stream("ollama", "generate", {"model": "llama3.2", "prompt": "hi"})
        with pytest.raises(StreamError) as err:
            stream.collect()
    assert err.value.partial_text == "".join(json.loads(l)["response"] for l in lines[:2])


def test_error_line_and_malformed_line_midstream(srv: LocalServer) -> None:
    lines = native_lines(srv, "/api/generate", {"model": "llama3.2", "prompt": "hi"})
    srv.script(ServerResponse.stream(lines[:1] + [format_ndjson(
        {"error": "an error was encountered while running the model: unexpected EOF"})],
        content_type="application/x-ndjson"))
    srv.script(ServerResponse.stream(lines[:1] + [b'{"model": "llama3.2", "resp\n'],
                                     content_type="application/x-ndjson"))
    with make_client(srv.url) as client:
        with pytest.raises(StreamError) as err:
            client.stream("ollama", "generate", {"model": "llama3.2", "prompt": "hi"}).collect()
        assert isinstance(err.value.cause_error, TransientError)
        assert "unexpected EOF" in str(err.value) and err.value.partial_text
        with pytest.raises(StreamError) as bad:
            client.stream("ollama", "generate", {"model": "llama3.2", "prompt": "hi"}).collect()
        assert bad.value.cause_error.code == "malformed_response"


def test_load_and_unload_with_keep_alive(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        loaded = client.call("ollama", "generate", {"model": "llama3.2"})
        assert loaded.finish_reason == "load" and loaded.text == ""
        assert [m["name"] for m in client.call("ollama", "ps", {}).data] == ["llama3.2:latest"]
        gone = client.call("ollama", "chat", {"model": "llama3.2", "messages": [], "keep_alive": 0})
        assert gone.finish_reason == "unload"
        assert client.call("ollama", "ps", {}).data == []
    assert (srv.last.method, srv.last.path) == ("GET", "/api/ps")


# ---------------------------------------------------------------------- embed, models
def test_embed_single_and_list(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        one = client.call("ollama", "embed", {"model": "all-minilm", "input": "Why is the sky blue?"})
        assert sent_json(srv.last) == {"model": "all-minilm", "input": "Why is the sky blue?"}
        two = client.call("ollama", "embed", {"model": "all-minilm", "dimensions": 8,
                                              "input": ["a", "Why is the sky blue?"]})
    assert srv.last.path == "/api/embed"
    assert len(one.data) == 1 and len(one.data[0]) == 16 and one.usage.prompt_tokens == 6
    assert [len(v) for v in two.data] == [8, 8]


def test_embed_errors(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(ContextTooLong):
            client.call("ollama", "embed", {"model": "all-minilm", "input": "w " * 3000,
                                            "truncate": False})
        assert len(client.call("ollama", "embed", {"model": "all-minilm",
                                                   "input": "w " * 3000}).data) == 1
        with pytest.raises(InvalidRequest) as err:
            client.call("ollama", "embed", {"model": "llama3.2", "input": "x"})
        assert "does not support embeddings" in err.value.message
    srv.script(ServerResponse.json({"model": "all-minilm", "embeddings": [[0.1]]}))
    with make_client(srv.url) as client:
        with pytest.raises(CountMismatch) as short:
            client.call("ollama", "embed", {"model": "all-minilm", "input": ["a", "b"]})
    assert (short.value.expected, short.value.received, short.value.attempts) == (2, 1, 1)


def test_tags_show_version(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        tags = client.call("ollama", "tags", {})
        assert (srv.last.method, srv.last.path) == ("GET", "/api/tags")
        assert [m["name"] for m in tags.data] == ["llama3.2:latest", "all-minilm:latest"]
        shown = client.call("ollama", "show", {"model": "llama3.2", "verbose": False})
        assert (srv.last.path, sent_json(srv.last)) == ("/api/show", {"model": "llama3.2",
                                                                     "verbose": False})
        assert "completion" in shown.data["capabilities"]
        version = client.call("ollama", "version", {})
        assert srv.last.path == "/api/version" and version.text == "0.12.3"


def test_pull_streams_progress_until_success(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        stream = client.stream("ollama", "pull", {"model": "qwen3:0.6b"})
        chunks = list(stream)
        assert sent_json(srv.last) == {"model": "qwen3:0.6b", "stream": True}
        statuses = [c.raw["status"] for c in chunks]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert [c.raw.get("completed") for c in chunks if "completed" in c.raw] == [1000, 2000, 3000]
        assert chunks[-1].finish_reason == "success" and stream.text == ""
        assert "qwen3:0.6b" in [m["name"] for m in client.call("ollama", "tags", {}).data]
        done = client.call("ollama", "pull", {"model": "llama3.2"})
        assert sent_json(srv.last) == {"model": "llama3.2", "stream": False}
        assert done.finish_reason == "success"


def test_pull_of_an_unknown_model() -> None:
    with LocalServer(OllamaServer(registry=["llama3.2"])) as server, \
            make_client(server.url) as client:
        with pytest.raises(StreamError) as err:
            client.stream("ollama", "pull", {"model": "nope"}).collect()
        assert isinstance(err.value.cause_error, NotFound)
        with pytest.raises(NotFound):
            client.call("ollama", "pull", {"model": "nope"})
        lines = native_lines(server, "/api/pull", {"model": "llama3.2"})
        server.script(ServerResponse.stream(lines[:-1], content_type="application/x-ndjson"))
        with pytest.raises(StreamError) as cut:
            client.stream("ollama", "pull", {"model": "llama3.2"}).collect()
        assert "truncated" in str(cut.value)


# ---------------------------------------------------------------------- errors, config
@pytest.mark.parametrize("status,message,cls", [
    (404, 'model "llama9" not found, try pulling it first', NotFound),
    (400, "invalid options: foo", InvalidRequest),
    (500, "llama runner process has terminated: signal: killed", TransientError),
    (503, "server busy, please try again.  maximum pending requests exceeded", TransientError),
    (429, "too many requests", RateLimited),
    (401, "unauthorized", AuthError),
])
def test_error_bodies(srv: LocalServer, status: int, message: str, cls: type) -> None:
    srv.script(ServerResponse.json({"error": message}, status, headers={"retry-after": "2"}))
    with make_client(srv.url) as client:
        with pytest.raises(cls) as err:
            client.call("ollama", "chat", {"model": "llama3.2", "messages": MESSAGES})
    assert type(err.value) is cls and err.value.message == message
    assert err.value.status == status and err.value.retry_after == 2


def test_real_not_found_and_retry_after_503(srv: LocalServer) -> None:
    with make_client(srv.url, attempts=3) as client:
        with pytest.raises(NotFound):
            client.stream("ollama", "chat", {"model": "llama9", "messages": MESSAGES})
        assert len(srv.requests) == 1  # not retried
        srv.script(ServerResponse.json({"error": "server busy"}, 503, headers={"retry-after": "0"}))
        assert client.call("ollama", "chat", {"model": "llama3.2", "messages": MESSAGES}).text
    assert len(srv.requests) == 3


@pytest.mark.parametrize("response,what", [
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), "HTML"),
    (ServerResponse.text("<html>proxy login</html>", 200, "text/html"), "HTML"),
    (ServerResponse(200, {"Content-Type": "application/json"}, b'{"model": "ll'), "malformed"),
    (ServerResponse(200, {"Content-Type": "application/json"}, b""), "empty"),
    (ServerResponse.json({"model": "llama3.2", "done": False}), "final"),
])
def test_broken_answers_are_transient(srv: LocalServer, response: ServerResponse, what: str) -> None:
    srv.script(response)
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as err:
            client.call("ollama", "chat", {"model": "llama3.2", "messages": MESSAGES})
    assert what in str(err.value)


def test_bearer_key_for_ollama_com() -> None:
    with LocalServer(OllamaServer(token=fake_key(1))) as server:
        with make_client(server.url, keys=[fake_key(1)]) as client:
            assert client.call("ollama", "version", {}).text
            assert server.last.header("authorization") == "Bearer test-key-1"
        with make_client(server.url, keys=[fake_key(2)]) as client:
            with pytest.raises(AuthError) as err:
                client.call("ollama", "tags", {})
    assert fake_key(2) not in str(err.value) and fake_key(2) not in repr(err.value)


def test_base_url_forms_and_configuration_sources(srv: LocalServer) -> None:
    # the original system's base carried /api: it is stripped, paths stay /api/...
    with make_client(srv.url + "/api/") as client:
        assert client.call("ollama", "version", {}).text
    assert srv.last.path == "/api/version"
    norm = OllamaBackend.normalize_base_url
    assert norm("127.0.0.1:11434") == "http://127.0.0.1:11434"
    assert norm("https://ollama.com") == "https://ollama.com"
    assert norm("http://gpu:11434/proxy/ollama/api") == "http://gpu:11434/proxy/ollama"
    assert OllamaBackend().base_url == "http://localhost:11434"
    assert OllamaBackend.base_url_from({"ollama_api_url": "http://h:1/api"}, {}) == "http://h:1/api"
    assert OllamaBackend.base_url_from({}, {"OLLAMA_HOST": "0.0.0.0:11434"}) == "0.0.0.0:11434"
    assert OllamaBackend.keys_from({}, {"OLLAMA_API_KEY": "test-key-3"})[0].reveal() == "test-key-3"


def test_payload_checks_before_sending(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest):
            client.submit("ollama", "chat", {"messages": MESSAGES})
        with pytest.raises(InvalidRequest):
            client.submit("ollama", "embed", {"model": "all-minilm"})
        with pytest.raises(InvalidRequest):
            client.submit("ollama", "tags", {}, stream=True)
    assert srv.requests == []


# ---------------------------------------------------------------------- embed batching
def hold_worker(srv: LocalServer, client: Client) -> threading.Event:
    """Occupy the client's only worker with a held /api/version call."""
    return testing.hold_worker(srv, client, "ollama", "version")


def test_queued_single_embeds_are_coalesced(srv: LocalServer) -> None:
    texts = [f"text {i}" for i in range(5)]
    expected = {t: requests.post(srv.url + "/api/embed", json={"model": "all-minilm", "input": t},
                                 timeout=5).json()["embeddings"][0] for t in texts}
    srv.clear()
    with make_client(srv.url, concurrency=1, options={"embed_batch_size": 3}) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("ollama", "embed", {"model": "all-minilm", "input": t})
                   for t in texts]
        futures.append(client.submit("ollama", "embed", {"model": "all-minilm", "input": "x",
                                                         "dimensions": 4}))
        release.set()
        results = [f.result(timeout=10) for f in futures]
    assert [sent_json(r) for r in srv.requests[1:]] == [
        {"model": "all-minilm", "input": texts[:3]}, {"model": "all-minilm", "input": texts[3:]},
        {"model": "all-minilm", "input": "x", "dimensions": 4}]
    for text, res in zip(texts, results):
        assert res.data == [expected[text]]
    assert len(results[-1].data[0]) == 4


def test_embed_batch_key_and_split_mismatch() -> None:
    b = OllamaBackend()
    key = b.batch_key(Request("embed", {"model": "m", "input": "a"}))
    assert key is not None and key == b.batch_key(Request("embed", {"model": "m", "input": ["b"]}))
    assert b.batch_key(Request("embed", {"model": "m2", "input": "a"})) != key
    assert b.batch_key(Request("embed", {"model": "m", "input": ["a", "b"]})) is None
    assert b.batch_key(Request("chat", {"model": "m", "messages": []})) is None
    reqs = [Request("embed", {"model": "m", "input": "a"}), Request("embed", {"model": "m", "input": "b"})]
    assert b.merge_batch(reqs).payload == {"model": "m", "input": ["a", "b"]}
    from ipfs_accelerate_py.results import Result

    with pytest.raises(CountMismatch) as err:
        b.split_batch(reqs, Result(data=[[0.1]]))
    assert (err.value.expected, err.value.received) == (2, 1)


def test_html_or_empty_answer_to_a_stream_is_transient(srv: LocalServer) -> None:
    srv.script(ServerResponse.text("<html><body>Gateway</body></html>", 200, "text/html"),
               ServerResponse.stream([], content_type="application/x-ndjson"))
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as html:
            client.stream("ollama", "chat", {"model": "llama3.2", "messages": MESSAGES})
        assert html.value.code == "malformed_response"
        with pytest.raises(TransientError) as empty:
            client.stream("ollama", "chat", {"model": "llama3.2", "messages": MESSAGES})
        assert "before its first chunk" in str(empty.value)


def test_base_url_from_the_environment_when_none_is_configured(
        srv: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    host = srv.url[len("http://"):]
    monkeypatch.setenv("OLLAMA_HOST", host)  # Ollama's own variable: a bare host:port
    assert OllamaBackend().base_url == srv.url
    monkeypatch.setenv("OLLAMA_API_URL", srv.url + "/api")  # the original system's form
    with Client([BackendConfig(name="ollama")], ClientConfig(max_concurrency=1)) as client:
        assert client.call("ollama", "version", {}).text
    assert srv.last.path == "/api/version"
    assert OllamaBackend(BackendConfig("ollama", base_url="http://explicit:1")).base_url == \
        "http://explicit:1"
