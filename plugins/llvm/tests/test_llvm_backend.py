"""The llvm backend through the pipeline, over real HTTP against the LLVM protocol server."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py import BackendConfig, Request
from ipfs_accelerate_py.errors import (
    CountMismatch,
    AuthError,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    RateLimited,
    TransientError,
)
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer, fake_key
from ipfs_accelerate_llvm.backend import LlvmBackend
from ipfs_accelerate_llvm.server import LlvmServer

PROGRAM = 'int main() {\n  // greet\n  printf("hello world\\n");\n\n  return 7;\n}'


def calls(srv: LocalServer, suffix: str) -> list:
    return [r for r in srv.requests if r.path.endswith(suffix)]


# ---------------------------------------------------------------------- each operation, its own path
def test_models_status_and_reload(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        models = client.call("llvm", "list_models", {})
        info = client.call("llvm", "model_info", {"model": "t5-small"})
        status = client.call("llvm", "status", {})
        reloaded = client.call("llvm", "reload_model", {"model": "t5-small"})
    assert [(r.method, r.path) for r in srv.requests] == [
        ("GET", "/models"), ("GET", "/models/t5-small"), ("GET", "/status"),
        ("POST", "/models/t5-small/reload")]
    assert [m["id"] for m in models.data] == ["resnet50", "bert-base", "t5-small"]
    assert info.model == "t5-small" and info.data["status"] == "loading"
    assert status.data == {"status": "ok", "version": "1.0.0", "models_loaded": 2, "models_total": 3}
    assert reloaded.data == {"model": "t5-small", "status": "reloaded"}
    for r in srv.requests:
        assert r.header("authorization") == f"Bearer {fake_key(1)}"
        assert _uuid_shaped(r.header("x-request-id", ""))


def test_bare_model_ids_are_normalised(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.json({"models": ["a", {"id": "b", "status": "loaded"}]}))
    with make_client(srv.url) as client:
        res = client.call("llvm", "list_models", {})
    assert res.data == [{"id": "a"}, {"id": "b", "status": "loaded"}]


def test_infer_sends_input_and_parameters(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, options={"batching": False}) as client:
        res = client.call("llvm", "infer", {"model": "resnet50", "input": [1.0, 2.5],
                                            "parameters": {"scale": 3}})
        text = client.call("llvm", "infer", {"model": "bert-base", "input": "hello"})
    req = srv.requests[0]
    assert (req.method, req.path) == ("POST", "/models/resnet50/infer")
    assert req.header("content-type") == "application/json"
    assert json.loads(req.body) == {"input": [1.0, 2.5], "parameters": {"scale": 3}}
    assert json.loads(srv.requests[1].body) == {"input": "hello", "parameters": {}}
    assert res.data == [3.0, 7.5] and res.model == "resnet50"
    assert text.text == "HELLO" and text.data == "HELLO"


def test_batch_infer_checks_the_result_count(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        res = client.call("llvm", "batch_infer", {"model": "bert-base", "inputs": ["a", [1, 2]]})
        srv.script(ServerResponse.json({"results": [{"output": "A"}]}))
        with pytest.raises(CountMismatch, match="expected 2 results for 2 inputs, received 1"):
            client.call("llvm", "batch_infer", {"model": "bert-base", "inputs": ["a", "b"]})
    assert srv.requests[0].path == "/models/bert-base/batch_infer"
    assert json.loads(srv.requests[0].body) == {"inputs": ["a", [1, 2]], "parameters": {}}
    assert res.data == ["A", [2, 4]]


def test_execute_optimize_and_batch_execute_use_their_own_paths(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        ran = client.call("llvm", "execute", {"input": PROGRAM, "parameters": {"timeout": 5}})
        opt = client.call("llvm", "optimize", {"input": PROGRAM, "optimization_level": "O1"})
        default_level = client.call("llvm", "optimize", {"input": PROGRAM})
        batch = client.call("llvm", "batch_execute", {"inputs": [PROGRAM, "int main() {"]})
    assert [(r.method, r.path) for r in srv.requests] == [
        ("POST", "/execute"), ("POST", "/optimize"), ("POST", "/optimize"), ("POST", "/batch_execute")]
    assert json.loads(srv.requests[0].body) == {"input": PROGRAM, "parameters": {"timeout": 5}}
    assert json.loads(srv.requests[1].body) == {"input": PROGRAM,
                                                "parameters": {"optimization_level": "O1"}}
    assert json.loads(srv.requests[2].body)["parameters"] == {"optimization_level": "O2"}
    assert ran.text == "hello world\n"
    assert ran.data["result"] == 7 and ran.data["errors"] == []
    assert opt.text == 'int main() {\n  printf("hello world\\n");\n  return 7;\n}'
    assert opt.data["optimization_passes"] == ["mem2reg", "simplifycfg", "early-cse"]
    assert len(default_level.data["optimization_passes"]) == 6
    assert [r["result"] for r in batch.data] == [7, None]
    assert batch.data[1]["errors"] == ["error: expected '}' at end of input"]


@pytest.mark.parametrize("op, payload, fragment", [
    ("infer", {"model": "resnet50"}, "needs 'input'"),
    ("infer", {"input": "x"}, "no model"),
    ("execute", {"input": "   "}, "code to run"),
    ("optimize", {"input": PROGRAM, "optimization_level": "O9"}, "optimization_level"),
    ("batch_execute", {"inputs": []}, "non-empty list"),
    ("batch_infer", {"model": "m", "inputs": "x"}, "non-empty list"),
])
def test_impossible_requests_are_refused_before_sending(srv: LocalServer, make_client, op: str,
                                                        payload: dict, fragment: str) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest, match=fragment):
            client.call("llvm", op, payload)
    assert srv.requests == []


# ---------------------------------------------------------------------- errors
def test_error_bodies_are_classified(srv: LocalServer, make_client) -> None:
    # two attempts: a third 503 would trip the breaker, and requests wait out an outage
    with make_client(srv.url, attempts=2) as client:
        with pytest.raises(NotFound) as missing:
            client.call("llvm", "infer", {"model": "nope", "input": "x", "batch": False})
        with pytest.raises(InvalidRequest) as bad:
            client.call("llvm", "infer", {"model": "resnet50", "input": {"x": 1}, "batch": False})
        with pytest.raises(TransientError) as loading:
            client.call("llvm", "infer", {"model": "t5-small", "input": "x", "batch": False})
    assert (missing.value.status, missing.value.code) == (404, "model_not_found")
    assert missing.value.message == "model 'nope' not found"
    assert (bad.value.status, bad.value.code) == (400, "invalid_input")
    assert (loading.value.status, loading.value.code) == (503, "model_loading")
    # 404 and 400 once each (never retried); the 503 retried
    assert [r.path for r in srv.requests].count("/models/t5-small/infer") == 2
    assert len(srv.requests) == 4


def test_code_decides_over_status_and_string_errors_work(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.json({"error": {"message": "input has 9000 tokens", "code": "input_too_long"}}, 400),
               ServerResponse.json({"error": "plain message"}, 500))
    with make_client(srv.url) as client:
        with pytest.raises(ContextTooLong):
            client.call("llvm", "execute", {"input": PROGRAM})
        with pytest.raises(TransientError, match="plain message"):
            client.call("llvm", "execute", {"input": PROGRAM})


def test_429_carries_retry_after_and_quota_headers(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.json({"error": {"message": "slow down", "code": "rate_limited"}}, 429,
                                   headers={"Retry-After": "3", "x-ratelimit-limit-requests": "120",
                                            "x-ratelimit-remaining-requests": "0",
                                            "x-ratelimit-reset-requests": "3s"}))
    with make_client(srv.url) as client:
        with pytest.raises(RateLimited) as info:
            client.call("llvm", "status", {})
    assert info.value.retry_after == 3.0
    quota = LlvmBackend(BackendConfig(name="llvm")).rate_limit_info(info.value.response)
    assert (quota.limit_requests, quota.remaining_requests, quota.reset_requests) == (120, 0, 3.0)


@pytest.mark.parametrize("answer, fragment", [
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), "HTML"),
    (ServerResponse.text("", 200, "application/json"), "empty body"),
    (ServerResponse.text('{"output": "HEL', 200, "application/json"), "malformed JSON"),
    (ServerResponse.json({"model": "bert-base"}), "without 'output'"),
    (ServerResponse.json(["HELLO"]), "JSON object"),
])
def test_broken_answers_are_transient(srv: LocalServer, make_client, answer: ServerResponse,
                                      fragment: str) -> None:
    srv.script(answer)
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as info:
            client.call("llvm", "infer", {"model": "bert-base", "input": "hello"})
    assert fragment in str(info.value)


def test_bearer_auth_is_optional_and_never_leaks(make_client) -> None:
    with LocalServer(LlvmServer(api_key=fake_key(2))) as srv:
        with make_client(srv.url, keys=[]) as client:
            with pytest.raises(AuthError) as info:
                client.call("llvm", "status", {})
        assert srv.last.header("authorization") is None
        with make_client(srv.url, keys=[fake_key(2)]) as client:
            assert client.call("llvm", "status", {}).data["status"] == "ok"
    assert info.value.code == "unauthorized" and len(srv.requests) == 2
    assert fake_key(2) not in str(info.value)


# ---------------------------------------------------------------------- batching
def test_queued_infers_become_one_batch_infer_split_back(srv: LocalServer, make_client,
                                                         hold_worker) -> None:
    inputs = ["a", [1, 2], "bc", [0.5], "d"]
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("llvm", "infer", {"model": "bert-base", "input": v}) for v in inputs]
        release.set()
        results = [f.result(10) for f in futures]
    (call,) = calls(srv, "/batch_infer")
    assert call.path == "/models/bert-base/batch_infer"
    assert json.loads(call.body) == {"inputs": inputs, "parameters": {}}
    assert calls(srv, "/infer") == []
    assert [r.data for r in results] == ["A", [2, 4], "BC", [1.0], "D"]
    assert [r.request_id for r in results] == [f.request_id for f in futures]
    assert results[0].text == "A" and results[1].text is None


def test_batches_respect_model_parameters_and_max_size(srv: LocalServer, make_client,
                                                       hold_worker) -> None:
    with make_client(srv.url, concurrency=1, options={"max_batch_size": 2}) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("llvm", "infer", {"model": "bert-base", "input": [1]}) for _ in range(3)]
        futures.append(client.submit("llvm", "infer", {"model": "resnet50", "input": [1]}))
        futures.append(client.submit("llvm", "infer", {"model": "bert-base", "input": [1],
                                                       "parameters": {"scale": 10}}))
        release.set()
        results = [f.result(10) for f in futures]
    assert [r.data for r in results] == [[2], [2], [2], [2], [10]]
    sent = sorted((r.path, len(json.loads(r.body).get("inputs", [None])))
                  for r in srv.requests if r.method == "POST")
    assert sent == [("/models/bert-base/batch_infer", 2), ("/models/bert-base/infer", 1),
                    ("/models/bert-base/infer", 1), ("/models/resnet50/infer", 1)]


def test_a_lone_infer_is_not_held_back(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, batch_window=0.05) as client:
        assert client.call("llvm", "infer", {"model": "bert-base", "input": "solo"}).text == "SOLO"
    assert [r.path for r in srv.requests] == ["/models/bert-base/infer"]


def test_a_short_batch_answer_fails_every_request(srv: LocalServer, make_client, hold_worker) -> None:
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        srv.script(ServerResponse.json({"results": [{"output": "A"}, {"output": "B"}]}))
        futures = [client.submit("llvm", "infer", {"model": "bert-base", "input": v}) for v in "abc"]
        release.set()
        errors = [f.exception(10) for f in futures]
    assert all(isinstance(e, TransientError) for e in errors)
    assert "expected 3 results for 3 inputs, received 2" in str(errors[0])


def test_split_batch_raises_on_a_count_mismatch() -> None:
    backend = LlvmBackend(BackendConfig(name="llvm"))
    reqs = [Request(operation="infer", payload={"model": "m", "input": i}) for i in range(3)]
    merged = backend.merge_batch(reqs)
    assert merged.operation == "batch_infer" and merged.payload["inputs"] == [0, 1, 2]
    with pytest.raises(CountMismatch, match="expected 3 results for 3 inputs, received 2") as info:
        backend.split_batch(reqs, Result(data=[1, 2]))
    assert info.value.code == "count_mismatch" and info.value.should_retry is False
    assert [r.data for r in backend.split_batch(reqs, Result(data=[5, 6, 7]))] == [5, 6, 7]


# ---------------------------------------------------------------------- configuration
def test_env_and_metadata_configuration(srv: LocalServer, make_client,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert LlvmBackend(BackendConfig(name="llvm")).base_url == "http://localhost:8080"
    monkeypatch.setenv("LLVM_BASE_URL", srv.url)
    monkeypatch.setenv("LLVM_API_KEY", fake_key(5))
    with make_client(None, keys=[]) as client:
        client.call("llvm", "status", {})
    assert srv.last.header("authorization") == f"Bearer {fake_key(5)}"
    monkeypatch.setenv("LLVM_API_URL", "http://preferred:1")
    assert LlvmBackend(BackendConfig(name="llvm")).base_url == "http://preferred:1"
    assert LlvmBackend(BackendConfig(name="llvm", base_url="http://cfg:2/")).base_url == "http://cfg:2"
    meta = {"llvm_api_url": "http://meta:3", "llvm_api_key": fake_key(6)}
    assert LlvmBackend.base_url_from(meta, environ={}) == "http://meta:3"
    assert LlvmBackend.keys_from(meta, environ={})[0].reveal() == fake_key(6)


def test_default_model_option_and_escaped_ids(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, options={"model": "resnet50"}) as client:
        assert client.call("llvm", "infer", {"input": [1]}).data == [2]
        with pytest.raises(NotFound):
            client.call("llvm", "model_info", {"model": "org/name v2"})
    assert srv.requests[0].path == "/models/resnet50/infer"
    assert srv.last.path == "/models/org%2Fname%20v2"


def _uuid_shaped(value: str) -> bool:
    # the pipeline's request ids are UUID-shaped (servers that check the header accept them)
    import uuid

    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
