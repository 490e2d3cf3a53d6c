"""The gemini backend's embeddings (with coalescing), countTokens and models over real HTTP."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py import BackendConfig, Client, Request
from ipfs_accelerate_py.errors import CountMismatch, NotFound, TransientError
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_gemini.backend import GeminiBackend
from ipfs_accelerate_gemini.server import GeminiServer

EMBED = "text-embedding-sim"


@pytest.fixture()
def proto() -> GeminiServer:
    return GeminiServer(seed=11, embedding_dim=8)


@pytest.fixture()
def srv(proto):
    server = LocalServer(proto)
    yield server
    server.close()


def make_client(srv, batch_window: float = 0.005, **options) -> Client:
    return testing.make_client("gemini", srv.url, attempts=2, concurrency=1, base_delay=0.01,
                               max_delay=0.05, batch_window=batch_window, options=options)


@pytest.fixture()
def client(srv):
    c = make_client(srv)
    yield c
    c.close()


def test_embed_sends_embed_content(srv, proto, client):
    res = client.call("gemini", "embed", {"model": EMBED, "text": "hello", "taskType": "RETRIEVAL_QUERY",
                                          "outputDimensionality": 4})
    req = srv.last
    assert (req.method, req.path) == ("POST", f"/v1beta/models/{EMBED}:embedContent")
    assert req.header("x-goog-api-key") == "test-key-1" and req.query == {}
    assert req.json() == {"model": f"models/{EMBED}", "content": {"parts": [{"text": "hello"}]},
                          "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 4}
    assert res.data == [proto.embedding("hello", 4)]


def test_batch_embed_sends_batch_embed_contents(srv, proto, client):
    res = client.call("gemini", "batch_embed", {"model": EMBED, "input": ["a", "b", "c"],
                                                "taskType": "CLUSTERING"})
    req = srv.last
    assert (req.method, req.path) == ("POST", f"/v1beta/models/{EMBED}:batchEmbedContents")
    assert req.json() == {"requests": [
        {"model": f"models/{EMBED}", "content": {"parts": [{"text": t}]}, "taskType": "CLUSTERING"}
        for t in "abc"]}
    assert res.data == [proto.embedding(t) for t in "abc"]


def test_batch_embed_accepts_native_requests(srv, proto, client):
    native = [{"content": {"parts": [{"text": "x"}]}, "title": "T", "taskType": "RETRIEVAL_DOCUMENT"}]
    res = client.call("gemini", "batch_embed", {"model": EMBED, "requests": native})
    assert srv.last.json() == {"requests": [{**native[0], "model": f"models/{EMBED}"}]}
    assert res.data == [proto.embedding("x")]


def test_queued_single_embeds_are_coalesced_into_one_batch_call(srv, proto):
    texts = [f"text {i}" for i in range(7)]
    with make_client(srv, batch_window=0.2) as c:
        futures = [c.submit(Request(backend="gemini", operation="embed",
                                    payload={"model": EMBED, "text": t})) for t in texts]
        results = [f.result(timeout=10) for f in futures]
    assert [r.data for r in results] == [[proto.embedding(t)] for t in texts]
    batch_calls = [r for r in srv.requests if r.path.endswith(":batchEmbedContents")]
    assert len(batch_calls) >= 1 and len(srv.requests) < len(texts)
    sent = [item["content"]["parts"][0]["text"] for r in batch_calls for item in r.json()["requests"]]
    sent += [r.json()["content"]["parts"][0]["text"] for r in srv.requests
             if r.path.endswith(":embedContent")]
    assert sorted(sent) == sorted(texts)


def test_batch_size_is_capped():
    backend = GeminiBackend(BackendConfig(name="gemini", options={"max_batch_size": 500}))
    assert backend.max_batch_size(Request("embed", {"model": EMBED, "text": "x"})) == 100
    small = GeminiBackend(BackendConfig(name="gemini", options={"max_batch_size": 3}))
    assert small.max_batch_size(Request("embed", {"model": EMBED, "text": "x"})) == 3


def test_batch_keys_group_by_model_and_key_pin_only():
    backend = GeminiBackend(BackendConfig(name="gemini"))
    a = Request("embed", {"model": EMBED, "text": "x", "taskType": "CLUSTERING"})
    b = Request("embed", {"model": "models/" + EMBED, "text": "y"})
    assert backend.batch_key(a) == backend.batch_key(b) is not None
    assert backend.batch_key(Request("embed", {"model": "other", "text": "x"})) != backend.batch_key(a)
    assert backend.batch_key(Request("embed", {"model": EMBED, "text": "x"}, key="k2")) != backend.batch_key(a)
    assert backend.batch_key(Request("batch_embed", {"model": EMBED, "input": ["x"]})) is None
    assert backend.batch_key(Request("embed", {"model": EMBED, "input": ["x", "y"]})) is None
    merged = backend.merge_batch([a, b])
    assert merged.operation == "batch_embed"
    assert merged.payload["requests"] == [
        {"model": f"models/{EMBED}", "content": {"parts": [{"text": "x"}]}, "taskType": "CLUSTERING"},
        {"model": f"models/{EMBED}", "content": {"parts": [{"text": "y"}]}}]


def test_split_batch_refuses_a_count_mismatch():
    backend = GeminiBackend(BackendConfig(name="gemini"))
    reqs = [Request("embed", {"model": EMBED, "text": t}) for t in "ab"]
    with pytest.raises(CountMismatch):
        backend.split_batch(reqs, Result(data=[[0.1]]))
    parts = backend.split_batch(reqs, Result(data=[[0.1], [0.2]]))
    assert [p.data for p in parts] == [[[0.1]], [[0.2]]]


def test_batch_embed_short_answer_is_a_count_mismatch_sent_once(srv, client):
    srv.script(*[ServerResponse.json({"embeddings": [{"values": [0.1]}, {"values": [0.2]}]})] * 2)
    with pytest.raises(CountMismatch) as info:
        client.call("gemini", "batch_embed", {"model": EMBED, "input": ["a", "b", "c"]})
    assert (info.value.expected, info.value.received, info.value.attempts) == (3, 2, 1)
    assert len(srv.requests) == 1
    assert [r["content"]["parts"][0]["text"] for r in srv.last.json()["requests"]] == ["a", "b", "c"]


def test_coalesced_embeds_answered_short_fail_each_request_once(srv):
    srv.script(*[ServerResponse.json({"embeddings": [{"values": [0.1]}]})] * 4)
    with make_client(srv, batch_window=0.3) as c:
        futures = [c.submit(Request(backend="gemini", operation="embed",
                                    payload={"model": EMBED, "text": t})) for t in "abc"]
        errors = [f.exception(timeout=10) for f in futures]
    assert all(isinstance(e, CountMismatch) for e in errors)
    batch_calls = [r for r in srv.requests if r.path.endswith(":batchEmbedContents")]
    assert len(batch_calls) == 1 and len(srv.requests) == 1


def test_server_rejects_mismatched_models_and_oversized_batches(srv):
    import requests

    h = {"x-goog-api-key": "test-key-1"}
    r = requests.post(srv.url + f"/v1beta/models/{EMBED}:batchEmbedContents", headers=h,
                      json={"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    item = {"model": f"models/{EMBED}", "content": {"parts": [{"text": "x"}]}}
    r = requests.post(srv.url + f"/v1beta/models/{EMBED}:batchEmbedContents", headers=h,
                      json={"requests": [item] * 101})
    assert r.status_code == 400


def test_malformed_embedding_bodies_are_transient(srv, client):
    srv.script(ServerResponse.json({"embedding": {}}), ServerResponse.json({"embedding": {}}))
    with pytest.raises(TransientError) as info:
        client.call("gemini", "embed", {"model": EMBED, "text": "x"})
    assert info.value.code == "malformed_response"


# ---------------------------------------------------------------------------- countTokens
def test_count_tokens_with_bare_contents(srv, client):
    contents = [{"role": "user", "parts": [{"text": "count me"}]}]
    res = client.call("gemini", "count_tokens", {"model": "gemini-sim-flash", "contents": contents})
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v1beta/models/gemini-sim-flash:countTokens")
    assert req.json() == {"contents": contents}
    assert isinstance(res.data, int) and res.usage.prompt_tokens == res.data > 0


def test_count_tokens_wraps_system_and_tools_in_a_generate_content_request(srv, client):
    client.call("gemini", "count_tokens", {"model": "gemini-sim-flash", "messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]})
    assert srv.last.json() == {"generateContentRequest": {
        "model": "models/gemini-sim-flash",
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "S"}]}}}


# ---------------------------------------------------------------------------- models
def test_models_lists_a_page_from_the_api(srv, proto, client):
    res = client.call("gemini", "models", {"pageSize": 2})
    req = srv.last
    assert (req.method, req.path) == ("GET", "/v1beta/models")
    assert req.query == {"pageSize": ["2"]} and req.header("x-goog-api-key") == "test-key-1"
    assert [m["id"] for m in res.data] == proto.models[:2]
    assert res.data[0]["name"] == f"models/{proto.models[0]}"
    rest = client.call("gemini", "models", {"pageToken": res.raw["nextPageToken"]})
    assert srv.last.query == {"pageToken": ["2"]}
    assert [m["id"] for m in rest.data] == proto.models[2:] and "nextPageToken" not in rest.raw


def test_model_describes_one_model(srv, proto, client):
    res = client.call("gemini", "model", {"model": "gemini-sim-pro"})
    assert (srv.last.method, srv.last.path) == ("GET", "/v1beta/models/gemini-sim-pro")
    assert res.model == "gemini-sim-pro" and res.data["inputTokenLimit"] == proto.input_token_limit
    with pytest.raises(NotFound) as info:
        client.call("gemini", "model", {"model": "gemini-nope"})
    assert info.value.code == "NOT_FOUND"


def test_token_estimate_counts_max_output_tokens():
    backend = GeminiBackend(BackendConfig(name="gemini"))
    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    base = backend.estimate_tokens(Request("generate", {"model": "m", "contents": contents}))
    with_limit = backend.estimate_tokens(Request("generate", {
        "model": "m", "contents": contents, "generationConfig": {"maxOutputTokens": 500}}))
    assert with_limit >= base + 500
