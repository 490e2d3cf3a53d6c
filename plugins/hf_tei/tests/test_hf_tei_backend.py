"""The hf_tei backend through the pipeline, over real HTTP against the TEI protocol server."""

from __future__ import annotations

import json
import math
import threading
from typing import Any, Iterator

import pytest
import requests

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request
from ipfs_accelerate_py.errors import (
    CountMismatch,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    TransientError,
)
from ipfs_accelerate_py.server import ServerRequest, ServerResponse
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer, fake_key
from ipfs_accelerate_hf_tei.backend import TEIBackend
from ipfs_accelerate_hf_tei.server import TEIServer

HF_ENV = ("HF_API_KEY", "HF_API_TOKEN", "HF_TOKEN", "HF_TEI_API_URL", "HF_TEI_ENDPOINT")


@pytest.fixture(autouse=True)
def _no_hf_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HF_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv() -> Iterator[LocalServer]:
    with LocalServer(TEIServer(seed=0)) as server:
        yield server


def make_client(url: str, *, keys: Any = (fake_key(1),), attempts: int = 1,
                concurrency: int = 4, **backend: Any) -> Client:
    return testing.make_client("hf_tei", url, keys=keys, attempts=attempts, concurrency=concurrency,
                               base_delay=0.01, max_delay=0.05, **backend)


def direct(srv: LocalServer, path: str, body: Any) -> Any:
    """What the protocol server answers for ``body`` (used to compute expectations)."""
    return requests.post(srv.url + path, json=body, timeout=5).json()


def sent_json(req: ServerRequest) -> Any:
    return json.loads(req.body)


def hold_worker(srv: LocalServer, client: Client) -> threading.Event:
    """Occupy the client's only worker with a held /health call (the kit's hold_worker)."""
    return testing.hold_worker(srv, client, "hf_tei", "health")


# ---------------------------------------------------------------------- requests sent
def test_embed_sends_the_exact_request_and_parses_vectors(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        res = client.call("hf_tei", "embed", {"inputs": "What is Deep Learning?",
                                             "normalize": True, "truncate": False})
    req = srv.requests[0]
    assert (req.method, req.path) == ("POST", "/embed")
    assert req.header("authorization") == "Bearer test-key-1"
    assert req.header("content-type") == "application/json"
    assert _uuid_shaped(req.header("x-request-id", ""))
    assert sent_json(req) == {"inputs": "What is Deep Learning?", "normalize": True,
                              "truncate": False}
    assert len(srv.requests) == 1
    (vec,) = res.data
    assert len(vec) == 16
    assert math.isclose(sum(v * v for v in vec), 1.0, rel_tol=1e-4)
    assert res.usage is not None and res.usage.prompt_tokens == 7  # [CLS] 4 words ? [SEP]
    assert res.backend == "hf_tei" and res.key_id


def test_no_key_sends_no_authorization_header(srv: LocalServer) -> None:
    with make_client(srv.url, keys=()) as client:
        client.call("hf_tei", "embed", {"inputs": ["a", "b"]})
    assert srv.last.header("authorization") is None
    assert sent_json(srv.last) == {"inputs": ["a", "b"]}


def test_configured_base_url_with_a_path_prefix_is_honoured() -> None:
    """A hosted Inference Endpoint or a reverse proxy serves TEI under a prefix."""
    tei = TEIServer(token=fake_key(2))

    def prefixed(req: ServerRequest) -> ServerResponse:
        if not req.path.startswith("/endpoints/e1/"):
            return ServerResponse.text("<html>404 Not Found</html>", 404, "text/html")
        return tei(ServerRequest(req.method, req.path[len("/endpoints/e1"):], req.query,
                                 req.headers, req.body))

    with LocalServer(prefixed) as server, \
            make_client(server.url + "/endpoints/e1/", keys=[fake_key(2)]) as client:
        res = client.call("hf_tei", "embed", {"inputs": "hello"})
        assert server.last.path == "/endpoints/e1/embed"
        assert len(res.data) == 1
    # a wrong prefix reaches the proxy's HTML 404, which is classified, not parsed
    with LocalServer(prefixed) as server, \
            make_client(server.url + "/other", keys=[fake_key(2)]) as client:
        with pytest.raises(NotFound) as err:
            client.call("hf_tei", "embed", {"inputs": "x"})
        assert server.last.path == "/other/embed"
    assert "HTML" in str(err.value)


def test_wrong_bearer_token_is_an_auth_error() -> None:
    from ipfs_accelerate_py.errors import AuthError

    with LocalServer(TEIServer(token=fake_key(2))) as server, \
            make_client(server.url, keys=[fake_key(1)]) as client:
        with pytest.raises(AuthError) as err:
            client.call("hf_tei", "embed", {"inputs": "x"})
    assert fake_key(1) not in str(err.value) and fake_key(1) not in repr(err.value)


def test_keys_and_base_url_from_metadata_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = TEIBackend.keys_from({"hf_api_token": "test-key-3"}, {})
    assert [k.reveal() for k in keys] == ["test-key-3"]
    assert TEIBackend.keys_from({}, {"HF_TOKEN": "test-key-4"})[0].reveal() == "test-key-4"
    assert TEIBackend.keys_from({}, {}) == []
    assert TEIBackend.base_url_from({"hf_tei_api_url": "http://tei:80"}, {}) == "http://tei:80"
    assert TEIBackend.base_url_from({}, {"HF_TEI_API_URL": "http://h:1"}) == "http://h:1"
    assert TEIBackend().base_url == "http://localhost:8080"
    assert TEIBackend(BackendConfig("hf_tei", base_url="http://gpu-box:9000/")).url("/embed") \
        == "http://gpu-box:9000/embed"


# ---------------------------------------------------------------------- operations
def test_rerank_sparse_all_predict_tokenize(srv: LocalServer) -> None:
    texts = ["Deep Learning is a kind of machine learning", "Cats sleep a lot"]
    with make_client(srv.url) as client:
        ranks = client.call("hf_tei", "rerank", {"query": "What is Deep Learning?",
                                                "texts": texts, "return_text": True,
                                                "raw_scores": False})
        assert (srv.last.path, sent_json(srv.last)) == ("/rerank", {
            "query": "What is Deep Learning?", "texts": texts, "return_text": True,
            "raw_scores": False})
        assert [r["index"] for r in ranks.data] == [0, 1]
        assert ranks.data[0]["text"] == texts[0]
        assert ranks.data[0]["score"] > ranks.data[1]["score"]

        sparse = client.call("hf_tei", "embed_sparse", {"inputs": ["cat cat dog"]})
        assert srv.last.path == "/embed_sparse"
        assert [len(s) for s in sparse.data] == [2]
        assert all(set(v) == {"index", "value"} for v in sparse.data[0])

        every = client.call("hf_tei", "embed_all", {"inputs": "a b"})
        assert srv.last.path == "/embed_all"
        assert len(every.data[0]) == 4  # [CLS] a b [SEP]

        pred = client.call("hf_tei", "predict", {"inputs": "I love it", "raw_scores": False})
        assert srv.last.path == "/predict"
        assert {p["label"] for p in pred.data} == {"negative", "positive"}
        assert math.isclose(sum(p["score"] for p in pred.data), 1.0, rel_tol=1e-4)

        toks = client.call("hf_tei", "tokenize", {"inputs": "Hi there", "add_special_tokens": False})
        assert sent_json(srv.last) == {"inputs": "Hi there", "add_special_tokens": False}
        assert [t["text"] for t in toks.data[0]] == ["hi", "there"]


def test_info_and_health(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        info = client.call("hf_tei", "info", {})
        assert (srv.last.method, srv.last.path, srv.last.body) == ("GET", "/info", b"")
        assert info.data["max_client_batch_size"] == 32 and info.model == "sim/tei-embedder"
        assert client.call("hf_tei", "health", {}).data["healthy"] is True
        assert srv.last.path == "/health"
        srv.protocol.healthy = False
        with pytest.raises(TransientError) as err:
            client.call("hf_tei", "health", {})
    assert err.value.status == 503 and err.value.code == "unhealthy"


def test_payload_without_required_fields_is_rejected_before_sending(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest):
            client.submit("hf_tei", "embed", {"inputs": []})
        with pytest.raises(InvalidRequest):
            client.submit("hf_tei", "rerank", {"query": "q", "texts": "not a list"})
        with pytest.raises(InvalidRequest):
            client.submit("hf_tei", "chat", {"messages": []})
    assert srv.requests == []


# ---------------------------------------------------------------------- batching
def test_queued_single_embeds_are_coalesced_and_split_in_order(srv: LocalServer) -> None:
    texts = [f"sentence number {i}" for i in range(10)]
    expected = {t: direct(srv, "/embed", {"inputs": t})[0] for t in texts}
    srv.clear()
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        reqs = [Request("embed", {"inputs": t}, backend="hf_tei") for t in texts]
        futures = [client.submit(r) for r in reqs]
        release.set()
        results = [f.result(timeout=10) for f in futures]
    assert [r.path for r in srv.requests] == ["/health", "/embed"]
    assert sent_json(srv.requests[1]) == {"inputs": texts}
    for text, res in zip(texts, results):
        assert res.data == [expected[text]]
    assert [r.request_id for r in results] == [r.request_id for r in reqs]


def test_batches_respect_max_client_batch_size_and_options(srv: LocalServer) -> None:
    with make_client(srv.url, concurrency=1, options={"max_client_batch_size": 3}) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("hf_tei", "embed", {"inputs": f"t{i}"}) for i in range(7)]
        futures += [client.submit("hf_tei", "embed", {"inputs": f"u{i}", "normalize": False})
                    for i in range(2)]
        release.set()
        for f in futures:
            f.result(timeout=10)
    bodies = [sent_json(r) for r in srv.requests[1:]]
    assert bodies == [{"inputs": ["t0", "t1", "t2"]}, {"inputs": ["t3", "t4", "t5"]},
                      {"inputs": "t6"}, {"inputs": ["u0", "u1"], "normalize": False}]


def test_info_lowers_the_batch_limit() -> None:
    with LocalServer(TEIServer(max_client_batch_size=2)) as server, \
            make_client(server.url) as client:
        backend = client.backends["hf_tei"]
        probe = Request("embed", {"inputs": "x"}, backend="hf_tei")
        assert backend.max_batch_size(probe) == 32
        client.call("hf_tei", "info", {})
        assert backend.max_batch_size(probe) == 2


def test_batch_key_only_for_single_inputs_with_equal_options() -> None:
    b = TEIBackend()
    one = b.batch_key(Request("embed", {"inputs": "a"}))
    assert one is not None
    assert b.batch_key(Request("embed", {"inputs": ["b"]})) == one
    assert b.batch_key(Request("embed", {"inputs": [101, 7592, 102]})) == one  # token ids
    assert b.batch_key(Request("embed", {"inputs": ["a", "b"]})) is None
    assert b.batch_key(Request("embed", {"inputs": "a", "truncate": True})) != one
    assert b.batch_key(Request("embed", {"inputs": "a"}, key="k2")) != one
    assert b.batch_key(Request("rerank", {"query": "q", "texts": ["a"]})) is None
    merged = b.merge_batch([Request("embed", {"inputs": "a", "normalize": False}),
                            Request("embed", {"inputs": ["b"], "normalize": False}),
                            Request("embed", {"inputs": [1, 2], "normalize": False})])
    assert merged.payload == {"inputs": ["a", "b", [1, 2]], "normalize": False}


def test_split_batch_raises_on_a_count_mismatch(srv: LocalServer) -> None:
    b = TEIBackend()
    reqs = [Request("embed", {"inputs": "a"}), Request("embed", {"inputs": "b"})]
    from ipfs_accelerate_py.results import Result

    with pytest.raises(TransientError):
        b.split_batch(reqs, Result(data=[[0.1]]))
    # over the wire: a server answering one vector for a batch of four fails all four
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        srv.script(ServerResponse.json([[0.5, 0.5]]))
        futures = [client.submit("hf_tei", "embed", {"inputs": f"t{i}"}) for i in range(4)]
        release.set()
        for f in futures:
            with pytest.raises(CountMismatch) as err:
                f.result(timeout=10)
            assert (err.value.expected, err.value.received) == (4, 1)
            assert "expected 4 results for 4 inputs, received 1" in str(err.value)
    assert sent_json(srv.last) == {"inputs": ["t0", "t1", "t2", "t3"]}


# ---------------------------------------------------------------------- errors
def test_validation_errors_are_invalid_request(srv: LocalServer) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest) as big:
            client.call("hf_tei", "embed", {"inputs": [f"t{i}" for i in range(40)]})
        assert big.value.status == 413 and big.value.code == "validation"
        assert type(big.value) is InvalidRequest
        with pytest.raises(ContextTooLong) as long:
            client.call("hf_tei", "embed", {"inputs": "word " * 600})
        assert long.value.status == 422 and "less than 512 tokens" in long.value.message
        ok = client.call("hf_tei", "embed", {"inputs": "word " * 600, "truncate": True})
        assert len(ok.data) == 1
        with pytest.raises(InvalidRequest) as prompt:
            client.call("hf_tei", "embed", {"inputs": "x", "prompt_name": "nope"})
        assert type(prompt.value) is InvalidRequest and prompt.value.status == 422
        with pytest.raises(InvalidRequest) as plain:  # axum's text/plain 422
            client.call("hf_tei", "embed", {"inputs": {"not": "valid"}})
        assert "deserialize" in plain.value.message


def test_overloaded_429_is_rate_limited_and_retried(srv: LocalServer) -> None:
    overloaded = ServerResponse.json({"error": "Model is overloaded", "error_type": "overloaded"},
                                     429, headers={"retry-after": "0"})
    srv.script(overloaded)
    with make_client(srv.url) as client:
        with pytest.raises(RateLimited) as err:
            client.call("hf_tei", "rerank", {"query": "q", "texts": ["a"]})
    assert err.value.code == "overloaded" and err.value.retry_after == 0
    srv.clear()
    srv.script(overloaded)
    with make_client(srv.url, attempts=3) as client:
        res = client.call("hf_tei", "rerank", {"query": "q", "texts": ["a"]})
    assert len(srv.requests) == 2 and res.data[0]["index"] == 0 and res.attempts == 2


@pytest.mark.parametrize("status,body,error_type", [
    (424, {"error": "Inference failed", "error_type": "backend"}, TransientError),
    (503, {"error": "unhealthy", "error_type": "unhealthy"}, TransientError),
    (500, {"error": "boom", "error_type": "backend"}, TransientError),
    (400, {"error": "`inputs` cannot be empty", "error_type": "empty"}, InvalidRequest),
    (404, {"error": "Not Found"}, NotFound),
])
def test_error_statuses(srv: LocalServer, status: int, body: Any, error_type: type) -> None:
    srv.script(ServerResponse.json(body, status))
    with make_client(srv.url) as client:
        with pytest.raises(error_type) as err:
            client.call("hf_tei", "embed", {"inputs": ["a", "b"]})
    assert err.value.status == status and err.value.message == body["error"]


def test_hosted_model_loading_503_carries_its_estimated_time(srv: LocalServer) -> None:
    srv.script(ServerResponse.json({"error": "Model sim/x is currently loading",
                                    "estimated_time": 12.5}, 503))
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as err:
            client.call("hf_tei", "embed", {"inputs": ["a", "b"]})
    assert err.value.retry_after == 12.5


@pytest.mark.parametrize("response,what", [
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), "HTML"),
    (ServerResponse.text("<html>ok?</html>", 200, "text/html"), "HTML"),
    (ServerResponse(200, {"Content-Type": "application/json"}, b'[[0.1, 0.2'), "malformed JSON"),
    (ServerResponse(200, {"Content-Type": "application/json"}, b""), "empty"),
    (ServerResponse.json({"vectors": []}), "JSON array"),
    (ServerResponse.json(["not", "vectors"]), "list of vectors"),
])
def test_broken_answers_are_transient_never_results(srv: LocalServer, response: ServerResponse,
                                                    what: str) -> None:
    srv.script(response)
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as err:
            client.call("hf_tei", "embed", {"inputs": ["a", "b"]})
    assert what in str(err.value)


def test_tei_error_after_retry_recovers(srv: LocalServer) -> None:
    srv.script(ServerResponse.json({"error": "Inference failed", "error_type": "backend"}, 424))
    with make_client(srv.url, attempts=2) as client:
        res = client.call("hf_tei", "embed", {"inputs": ["a", "b"]})
    assert len(res.data) == 2 and len(srv.requests) == 2
    assert sent_json(srv.requests[0]) == sent_json(srv.requests[1])


def test_server_is_deterministic_under_its_seed() -> None:
    with LocalServer(TEIServer(seed=1)) as a, LocalServer(TEIServer(seed=1)) as b, \
            LocalServer(TEIServer(seed=2)) as c:
        va, vb, vc = (direct(s, "/embed", {"inputs": "same text"}) for s in (a, b, c))
    assert va == vb and va != vc


# ---------------------------------------------------------------------- OpenAI-compatible route
def test_openai_compatible_embeddings(srv: LocalServer) -> None:
    native = direct(srv, "/embed", {"inputs": ["Hello there", "x"]})
    srv.clear()
    with make_client(srv.url) as client:
        res = client.call("hf_tei", "embeddings", {"input": ["Hello there", "x"], "model": "any"})
        assert (srv.last.path, sent_json(srv.last)) == ("/v1/embeddings", {
            "input": ["Hello there", "x"], "model": "any"})
        assert res.data == native and res.usage.prompt_tokens == 7
        b64 = client.call("hf_tei", "embeddings", {"input": "Hello there",
                                                  "encoding_format": "base64"})
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(b64.data[0], native[0]))
        assert len(b64.data[0]) == len(native[0])
        with pytest.raises(InvalidRequest) as err:  # {"message", "code", "error_type"}
            client.call("hf_tei", "embeddings", {"input": [f"t{i}" for i in range(40)]})
        assert err.value.status == 413 and err.value.code == "validation"
        assert "maximum allowed batch size" in err.value.message
        with pytest.raises(ContextTooLong):
            client.call("hf_tei", "embeddings", {"input": "word " * 600})
    srv.script(ServerResponse.json({"object": "list", "data": [
        {"object": "embedding", "index": 0, "embedding": [0.1]}], "model": "m",
        "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
    with make_client(srv.url) as client:
        with pytest.raises(TransientError):  # one vector for two inputs
            client.call("hf_tei", "embeddings", {"input": ["a", "b"]})


def test_openai_compatible_embeddings_are_coalesced(srv: LocalServer) -> None:
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("hf_tei", "embeddings", {"input": t, "model": "m"})
                   for t in ("a", "b", "c")]
        release.set()
        results = [f.result(timeout=10) for f in futures]
    assert sent_json(srv.last) == {"input": ["a", "b", "c"], "model": "m"}
    singles = [direct(srv, "/embed", {"inputs": t})[0] for t in ("a", "b", "c")]
    assert [r.data for r in results] == [[v] for v in singles]


def test_base_url_from_the_environment_when_none_is_configured(
        srv: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TEI_API_URL", srv.url + "/")
    with Client([BackendConfig(name="hf_tei")], ClientConfig(max_concurrency=1)) as client:
        assert client.call("hf_tei", "health", {}).data["healthy"]
    assert srv.last.path == "/health"
    assert TEIBackend(BackendConfig("hf_tei", base_url="http://explicit:1")).base_url == \
        "http://explicit:1"


# ---------------------------------------------------------------------- short answers
@pytest.mark.parametrize("operation,payload,short", [
    ("embed", {"inputs": ["a", "b", "c"]}, [[0.1], [0.2]]),
    ("embed_sparse", {"inputs": ["a", "b"]}, [[{"index": 1, "value": 0.5}]]),
    ("embed_all", {"inputs": ["a", "b"]}, [[[0.1], [0.2]]]),
    ("tokenize", {"inputs": ["a", "b"]}, [[{"id": 1, "text": "a"}]]),
    ("predict", {"inputs": ["a", "b", "c"]}, [[{"label": "positive", "score": 1.0}]]),
    ("rerank", {"query": "q", "texts": ["a", "b"]}, [{"index": 0, "score": 0.9}]),
])
def test_a_short_answer_is_a_count_mismatch_sent_once(srv: LocalServer, operation: str,
                                                      payload: dict, short: Any) -> None:
    srv.script(*[ServerResponse.json(short)] * 3)
    with make_client(srv.url, attempts=3) as client:
        with pytest.raises(CountMismatch) as err:
            client.call("hf_tei", operation, payload)
    expected = len(payload.get("inputs") or payload.get("texts"))
    assert (err.value.expected, err.value.received) == (expected, len(short))
    assert err.value.attempts == 1 and len(srv.requests) == 1  # never retried
    assert sent_json(srv.last) == payload
    assert f"expected {expected} results for {expected} inputs, received {len(short)}" in str(err.value)


def test_one_input_answers_one_item(srv: LocalServer) -> None:
    # A string, a single token-id list and a text pair are each one input.
    with make_client(srv.url) as client:
        assert len(client.call("hf_tei", "embed", {"inputs": "a"}).data) == 1
        assert len(client.call("hf_tei", "embed", {"inputs": [1, 2, 3]}).data) == 1
        pair = client.call("hf_tei", "predict", {"inputs": ["a premise", "a hypothesis"]})
        assert {p["label"] for p in pair.data} == {"negative", "positive"}


def test_rerank_indices_must_name_each_text_once(srv: LocalServer) -> None:
    srv.script(ServerResponse.json([{"index": 0, "score": 0.9}, {"index": 0, "score": 0.1}]))
    with make_client(srv.url) as client:
        with pytest.raises(CountMismatch, match="index 0 does not match"):
            client.call("hf_tei", "rerank", {"query": "q", "texts": ["a", "b"]})
        ranks = client.call("hf_tei", "rerank", {"query": "cats", "texts": ["dogs", "cats"]})
    assert sorted(r["index"] for r in ranks.data) == [0, 1]


def _uuid_shaped(value: str) -> bool:
    # the pipeline's request ids are UUID-shaped (servers that check the header accept them)
    import uuid

    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
