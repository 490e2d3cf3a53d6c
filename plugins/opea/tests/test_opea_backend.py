"""The OPEA backend over real HTTP, through the pipeline, against OPEAServer."""

from __future__ import annotations

import json
from concurrent.futures import wait

import pytest
from ipfs_accelerate_opea.backend import OPEABackend
from ipfs_accelerate_opea.server import OPEAServer

from ipfs_accelerate_py.client import Client
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import AuthError, CountMismatch, InvalidRequest, StreamError, TransientError
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result, Usage
from ipfs_accelerate_py.server import ServerRequest, ServerResponse, iter_chunks
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

MODEL = "Intel/neural-chat-7b-v3-3"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "What is Deep Learning?"}],
        "max_tokens": 17}



def make_client(srv: LocalServer | None, keys=(), base_path="/v1", options=None, concurrency=4,
                batch_window=0.005, base_url=None) -> Client:
    url = base_url if base_url is not None else srv.url + base_path
    return testing.make_client(OPEABackend, url, keys=keys, concurrency=concurrency,
                               options=options or {}, batch_window=batch_window)


@pytest.fixture
def srv():
    s = LocalServer(OPEAServer())
    yield s
    s.close()


@pytest.fixture
def client(srv):
    c = make_client(srv)
    yield c
    c.close(wait=False)


def answer(path: str, body: dict) -> ServerResponse:
    return OPEAServer().handle(ServerRequest("POST", path, body=json.dumps(body).encode()))


# ----------------------------------------------------------------------- chat
def test_chat_exact_request_without_a_key(client, srv):
    req = Request("chat", {**CHAT, "temperature": 0.1, "top_k": 5, "repetition_penalty": 1.03},
                  backend="opea")
    res = client.submit(req).result(10)
    sent = srv.last
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.header("authorization") is None
    assert sent.header("x-request-id") == req.request_id
    assert sent.json() == {**req.payload, "stream": False}
    assert res.text and res.finish_reason == "stop" and res.model == MODEL
    assert res.usage.total_tokens > 0


def test_optional_bearer_token(srv):
    guarded = LocalServer(OPEAServer(token="test-key-1"))
    c = make_client(guarded, keys=["test-key-1"])
    try:
        assert c.call("opea", "chat", CHAT).text
        assert guarded.last.header("authorization") == "Bearer test-key-1"
    finally:
        c.close(wait=False)
    c = make_client(guarded)
    try:
        with pytest.raises(AuthError) as info:
            c.call("opea", "chat", CHAT)
        assert info.value.message == "Not authenticated"
        assert len(guarded.requests) == 2  # not retried
    finally:
        c.close(wait=False)
        guarded.close()


def test_string_messages_answered_as_completion(client):
    res = client.call("opea", "chat", {"messages": "What is Deep Learning?", "max_tokens": 5})
    assert res.text and res.raw["object"] == "text_completion"
    streamed = client.stream("opea", "chat", {"messages": "What is Deep Learning?", "max_tokens": 5}).collect()
    assert streamed.text == res.text


def test_chat_stream_and_breaks(client, srv):
    whole = client.call("opea", "chat", CHAT)
    stream = client.stream("opea", "chat", CHAT)
    chunks = list(stream)
    assert srv.last.json()["stream"] is True
    assert stream.text == whole.text and len([c for c in chunks if c.text]) >= 3

    full = list(answer("/v1/chat/completions", {**CHAT, "stream": True}).body)
    srv.script(ServerResponse.stream(iter_chunks(full, cut_after=3)))
    with pytest.raises(StreamError) as info:
        client.stream("opea", "chat", CHAT).collect()
    assert info.value.partial_text and whole.text.startswith(info.value.partial_text)

    srv.script(ServerResponse.stream(full[:3] + ocs.sse_body(
        [{"object": "error", "message": "upstream TGI failed", "code": 500}], done=False)))
    with pytest.raises(StreamError) as info:
        client.stream("opea", "chat", CHAT).collect()
    assert isinstance(info.value.cause_error, TransientError)

    srv.script(ServerResponse.stream(full[:-1]))
    with pytest.raises(StreamError, match="truncated"):
        client.stream("opea", "chat", CHAT).collect()


def test_stream_options_only_with_streams(client, srv):
    client.call("opea", "chat", {**CHAT, "stream_options": {"include_usage": True}})
    assert "stream_options" not in srv.last.json()
    res = client.stream("opea", "chat", {**CHAT, "stream_options": {"include_usage": True}}).collect()
    assert srv.last.json()["stream_options"] == {"include_usage": True}
    assert res.usage.total_tokens > 0


# ----------------------------------------------------------------------- chatqna
def test_chatqna_plain_sends_stream_false(client, srv):
    res = client.call("opea", "chatqna", {"messages": "What is OPEA?", "max_tokens": 32})
    assert (srv.last.method, srv.last.path) == ("POST", "/v1/chatqna")
    assert srv.last.json() == {"messages": "What is OPEA?", "max_tokens": 32, "stream": False}
    assert res.text and res.model == "chatqna" and res.usage == Usage(0, 0, 0)


def test_chatqna_stream_bytes_frames(client, srv):
    plain = client.call("opea", "chatqna", {"messages": "What is OPEA?"})
    stream = client.stream("opea", "chatqna", {"messages": "What is OPEA?"})
    chunks = list(stream)
    assert srv.last.json()["stream"] is True
    assert stream.text == plain.text and len(chunks) >= 3


def test_chatqna_stream_unicode_openai_chunks_and_errors(client, srv):
    frames = [b"data: " + repr(t.encode()).encode() + b"\n\n" for t in ["Caf\u00e9 ", "cr\u00e8me", " br\u00fbl\u00e9e"]]
    srv.script(ServerResponse.stream(frames + [b"data: [DONE]\n\n"]))
    assert client.stream("opea", "chatqna", {"messages": "q"}).collect().text == "Café crème brûlée"

    llm = ocs.render_chat_chunks("m", ["Deep", " learning"], completion_id="c")
    srv.script(ServerResponse.stream(ocs.sse_body(llm)))
    assert client.stream("opea", "chatqna", {"messages": "q"}).collect().text == "Deep learning"

    srv.script(ServerResponse.stream(frames[:2]))  # no [DONE]
    with pytest.raises(StreamError) as info:
        client.stream("opea", "chatqna", {"messages": "q"}).collect()
    assert info.value.partial_text == "Café crème"

    srv.script(ServerResponse.stream(frames[:1] + [b"data: b'unterminated\n\n", b"data: [DONE]\n\n"]))
    with pytest.raises(StreamError) as info:
        client.stream("opea", "chatqna", {"messages": "q"}).collect()
    assert info.value.cause_error.code == "malformed_response"

    full = list(answer("/v1/chatqna", {"messages": "What is deep learning and why?"}).body)
    srv.script(ServerResponse.stream(iter_chunks(full, cut_after=2)))
    with pytest.raises(StreamError):
        client.stream("opea", "chatqna", {"messages": "What is deep learning and why?"}).collect()


# ----------------------------------------------------------------------- embeddings
def test_embeddings_openai_shape(client, srv):
    one = client.call("opea", "embeddings", {"model": "BAAI/bge-base-en-v1.5", "input": "hello"})
    assert (srv.last.method, srv.last.path) == ("POST", "/v1/embeddings")
    assert srv.last.json() == {"model": "BAAI/bge-base-en-v1.5", "input": "hello"}
    assert len(one.data) == 1 and len(one.data[0]) == 16
    many = client.call("opea", "embeddings", {"input": ["hello", "world"], "encoding_format": "base64"})
    assert many.data[0] == one.data[0] and len(many.data) == 2


def test_embeddings_legacy_embed_doc(client, srv):
    srv.script(ServerResponse.json({"id": "x", "text": "hello", "embedding": [0.1, 0.2, 0.3]}))
    assert client.call("opea", "embeddings", {"input": "hello"}).data == [[0.1, 0.2, 0.3]]


def test_single_embeddings_are_coalesced(srv):
    c = make_client(srv, concurrency=1, batch_window=0.5)
    try:
        texts = [f"passage {i}" for i in range(5)]
        futs = [c.submit(Request("embeddings", {"input": t}, backend="opea")) for t in texts]
        wait(futs, timeout=20)
        results = [f.result() for f in futs]
    finally:
        c.close(wait=False)
    assert [r.json() for r in srv.requests] == [{"input": texts}]
    for t, r in zip(texts, results):
        assert r.data == [ocs.synth_vector(t, 16)]
    assert sum(r.usage.prompt_tokens for r in results) == sum(oc.count_tokens(t) for t in texts)


def test_split_batch_mismatch_raises():
    b = OPEABackend()
    reqs = [Request("embeddings", {"input": "a"}), Request("embeddings", {"input": "b"})]
    with pytest.raises(CountMismatch, match="expected 2 results for 2 inputs, received 3"):
        b.split_batch(reqs, Result(data=[[1.0], [2.0], [3.0]]))
    assert b.max_batch_size(reqs[0]) == 32


# ----------------------------------------------------------------------- rerank
def test_rerank_convenience_form(client, srv):
    docs = ["Cats sleep a lot.", "Deep learning is a kind of machine learning.", "Deep sea fish."]
    res = client.call("opea", "rerank", {"query": "What is deep learning?", "documents": docs, "top_n": 2})
    assert (srv.last.method, srv.last.path) == ("POST", "/v1/reranking")
    assert srv.last.json() == {"input": "What is deep learning?", "top_n": 2,
                               "retrieved_docs": [{"text": d} for d in docs]}
    assert [d["index"] for d in res.data] == [1, 2]
    assert res.data[0]["text"] == docs[1] and res.data[0]["score"] > res.data[1]["score"]


def test_rerank_native_searched_doc(client, srv):
    payload = {"initial_query": "What is Deep Learning?",
               "retrieved_docs": [{"text": "Deep Learning is not..."}, {"text": "Deep learning is..."}],
               "top_n": 2}
    res = client.call("opea", "rerank", payload)
    assert srv.last.json() == payload
    assert res.raw["query"] == "What is Deep Learning?"
    assert {d["index"] for d in res.data} == {0, 1} and all(d["score"] is None for d in res.data)


def test_rerank_needs_query_and_documents(client, srv):
    with pytest.raises(InvalidRequest, match="documents"):
        client.call("opea", "rerank", {"query": "q"})
    assert srv.requests == []


# ----------------------------------------------------------------------- errors, config
def test_validation_error_not_retried(client, srv):
    srv.script(ServerResponse.json({"detail": [{"type": "missing", "loc": ["body", "messages"],
                                                "msg": "Field required"}]}, 422))
    with pytest.raises(InvalidRequest) as info:
        client.call("opea", "chat", CHAT)
    assert info.value.message == "body.messages: Field required" and len(srv.requests) == 1


def test_overload_and_server_errors_are_retried(client, srv):
    srv.script(lambda req: srv.protocol.rate_limited(req, RateLimitInfo(retry_after=0.01)))
    assert client.call("opea", "embeddings", {"input": "x"}).attempts == 2
    srv.script(ServerResponse.text("Internal Server Error", 500))
    assert client.call("opea", "embeddings", {"input": "x"}).attempts == 2


def test_health(client, srv):
    res = client.call("opea", "health", {})
    assert (srv.last.method, srv.last.path) == ("GET", "/v1/health_check")
    assert "Service Title" in res.data


def test_base_url_rules(srv, monkeypatch):
    assert OPEABackend().base_url == "http://localhost:8000/v1"
    assert OPEABackend(BackendConfig(name="opea", base_url="http://h:9000")).base_url == "http://h:9000/v1"
    assert OPEABackend(BackendConfig(name="opea", base_url="http://h:9000/v1/")).base_url == "http://h:9000/v1"
    assert OPEABackend.base_url_from({"opea_endpoint": "http://m:1/v1"}, environ={}) == "http://m:1/v1"
    assert OPEABackend.base_url_from({}, environ={"OPEA_API_ENDPOINT": "http://e:2"}) == "http://e:2"
    assert OPEABackend.keys_from({"opea_api_key": "test-key-1"}, environ={})[0].reveal() == "test-key-1"
    c = make_client(srv, base_path="")  # bare host: /v1 appended
    try:
        c.call("opea", "health", {})
        assert srv.last.path == "/v1/health_check"
    finally:
        c.close(wait=False)


def test_each_service_at_its_own_url(srv):
    emb = LocalServer(OPEAServer())
    c = make_client(srv, options={"embedding_url": emb.url})
    try:
        c.call("opea", "chat", CHAT)
        c.call("opea", "embeddings", {"input": "x"})
        assert [r.path for r in srv.requests] == ["/v1/chat/completions"]
        assert [r.path for r in emb.requests] == ["/v1/embeddings"]
    finally:
        c.close(wait=False)
        emb.close()


# ----------------------------------------------------------------------- base URL variants
def test_a_base_url_path_without_v1_gives_a_404_naming_the_url_tried(srv):
    from ipfs_accelerate_py.errors import NotFound

    with make_client(srv, base_path="/gateway") as c:  # a path: used as given, no /v1 added
        with pytest.raises(NotFound) as info:
            c.call("opea", "chat", CHAT)
    assert srv.last.path == "/gateway/chat/completions" and len(srv.requests) == 1
    assert f"HTTP 404 from POST {srv.url}/gateway/chat/completions" in str(info.value)
    assert f"live under {srv.url}/gateway/v1" in str(info.value)


def test_a_base_url_with_its_own_path_is_used_as_given(srv):
    with make_client(srv, base_path="/v1/") as c:
        c.call("opea", "chat", CHAT)
    assert srv.last.path == "/v1/chat/completions"


def test_embeddings_short_answer_is_a_count_mismatch_sent_once(srv):
    srv.script(ServerResponse.json({"object": "list", "model": MODEL, "data": [
        {"object": "embedding", "index": 0, "embedding": [0.1]}]}))
    with make_client(srv) as c:
        with pytest.raises(CountMismatch) as info:
            c.call("opea", "embeddings", {"model": MODEL, "input": ["a", "b"]})
    assert (info.value.expected, info.value.received, info.value.attempts) == (2, 1, 1)
    assert len(srv.requests) == 1 and srv.last.json()["input"] == ["a", "b"]
