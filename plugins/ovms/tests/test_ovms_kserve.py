"""OVMS KServe v2 REST through the pipeline, over real HTTP against the OVMS protocol server."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py import BackendConfig
from ipfs_accelerate_py.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    RateLimited,
    TransientError,
)
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer, fake_key
from ipfs_accelerate_ovms.backend import OvmsBackend
from ipfs_accelerate_ovms.server import OvmsServer

ROW = [1.0, 2.0, 3.0, 4.0]


def infer_payload(model: str = "resnet", rows: list[list[float]] | None = None, **extra: object) -> dict:
    rows = rows or [ROW]
    return {"model": model, "inputs": [{"name": "0", "shape": [len(rows), 4], "datatype": "FP32",
                                        "data": [x for r in rows for x in r]}], **extra}


# ---------------------------------------------------------------------- health and metadata
def test_health_and_server_metadata(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, keys=[]) as client:
        assert client.call("ovms", "live", {}).data is True
        assert client.call("ovms", "ready", {}).data is True
        meta = client.call("ovms", "server_metadata", {})
    assert [(r.method, r.path) for r in srv.requests] == [
        ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2")]
    assert meta.data["name"] == "OpenVINO Model Server"
    # anonymous: no key configured, so no Authorization header at all
    assert all(r.header("authorization") is None for r in srv.requests)


def test_model_metadata_and_ready_pin_the_version_in_the_url(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        meta = client.call("ovms", "model_metadata", {"model": "resnet"})
        pinned = client.call("ovms", "model_metadata", {"model": "resnet", "version": 2})
        ready = client.call("ovms", "model_ready", {"model": "resnet", "version": "1"})
    assert [r.path for r in srv.requests] == [
        "/v2/models/resnet", "/v2/models/resnet/versions/2", "/v2/models/resnet/versions/1/ready"]
    assert meta.model == "resnet"
    assert meta.data["inputs"] == [{"name": "0", "datatype": "FP32", "shape": [-1, 4]}]
    assert pinned.data["versions"] == ["1", "2"]
    assert ready.data is True
    assert srv.requests[0].header("authorization") == f"Bearer {fake_key(1)}"


# ---------------------------------------------------------------------- infer
def test_infer_sends_typed_tensors_and_version_only_in_the_url(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        res = client.call("ovms", "infer", infer_payload(version=2, id="req-7",
                                                         outputs=[{"name": "1463"}]))
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v2/models/resnet/versions/2/infer")
    assert req.header("content-type") == "application/json"
    assert req.header("authorization") == f"Bearer {fake_key(1)}"
    assert json.loads(req.body) == {
        "inputs": [{"name": "0", "shape": [1, 4], "datatype": "FP32", "data": ROW}],
        "id": "req-7", "outputs": [{"name": "1463"}]}
    assert res.model == "resnet"
    assert res.raw["model_version"] == "2" and res.raw["id"] == "req-7"
    # resnet answers [sum * version, min, max] per row
    assert res.data == [{"name": "1463", "shape": [1, 3], "datatype": "FP32", "data": [20.0, 1.0, 4.0]}]


def test_default_model_and_version_come_from_options(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, options={"model": "resnet", "version": "1"}) as client:
        payload = infer_payload()
        del payload["model"]
        res = client.call("ovms", "infer", payload)
    assert srv.last.path == "/v2/models/resnet/versions/1/infer"
    assert res.data[0]["data"] == [10.0, 1.0, 4.0]


def test_latest_version_means_unpinned(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        client.call("ovms", "infer", infer_payload(version="latest"))
    assert srv.last.path == "/v2/models/resnet/infer"
    assert "version" not in json.loads(srv.last.body)


@pytest.mark.parametrize("tensor, fragment", [
    ({"name": "0", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}, "3 elements"),
    ({"name": "0", "shape": [1, 4], "datatype": "FLOAT", "data": ROW}, "not a v2 tensor type"),
    ({"name": "0", "shape": [1, -4], "datatype": "FP32", "data": ROW}, "non-negative"),
    ({"name": "0", "shape": [1, 4], "datatype": "INT32", "data": ROW}, "does not match datatype"),
    ({"shape": [1, 4], "datatype": "FP32", "data": ROW}, "'name'"),
    ({"name": "0", "shape": [1, 4], "datatype": "FP32"}, "'data' is missing"),
])
def test_bad_tensors_are_rejected_before_sending(srv: LocalServer, make_client, tensor: dict,
                                                 fragment: str) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest) as info:
            client.call("ovms", "infer", {"model": "resnet", "inputs": [tensor]})
    assert fragment in str(info.value)
    assert srv.requests == []


def test_nested_data_is_accepted_when_its_count_matches(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        res = client.call("ovms", "infer", {"model": "resnet", "inputs": [
            {"name": "0", "shape": [2, 4], "datatype": "FP32", "data": [ROW, [0.0, 0.0, 0.0, 1.0]]}]})
    assert res.data[0]["shape"] == [2, 3]
    assert res.data[0]["data"] == [20.0, 1.0, 4.0, 2.0, 0.0, 1.0]  # latest version: 2


def test_no_model_anywhere_is_invalid(srv: LocalServer, make_client) -> None:
    payload = infer_payload()
    del payload["model"]
    with make_client(srv.url) as client:
        with pytest.raises(InvalidRequest, match="no model"):
            client.call("ovms", "infer", payload)
    assert srv.requests == []


# ---------------------------------------------------------------------- errors
def test_missing_model_and_version_are_not_found(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, attempts=3) as client:
        with pytest.raises(NotFound) as missing:
            client.call("ovms", "infer", infer_payload(model="nope"))
        with pytest.raises(NotFound) as version:
            client.call("ovms", "model_metadata", {"model": "resnet", "version": 9})
    assert missing.value.status == 404
    assert missing.value.message == "Model with requested name is not found"
    assert version.value.message == "Model with requested version is not found"
    assert len(srv.requests) == 2  # never retried


def test_server_side_400_is_invalid_request(srv: LocalServer, make_client) -> None:
    # dummy expects input "b"; the tensor is well formed, so only the server can refuse it
    with make_client(srv.url, attempts=3) as client:
        with pytest.raises(InvalidRequest) as info:
            client.call("ovms", "infer", infer_payload(model="dummy"))
    assert info.value.status == 400
    assert info.value.message == "Missing input with specific name"
    assert len(srv.requests) == 1


def test_model_not_loaded_yet_is_transient_and_retried(make_client) -> None:
    server = OvmsServer(seed=0)
    server.set_state("resnet", "2", "LOADING")
    with LocalServer(server) as srv, make_client(srv.url, attempts=3) as client:
        with pytest.raises(TransientError) as info:
            client.call("ovms", "model_ready", {"model": "resnet", "version": 2})
        assert info.value.status == 503
        assert info.value.message == "Model with requested version is not loaded yet"
        assert len(srv.requests) == 3
        srv.clear()
        srv.script(ServerResponse.json({"error": "Model with requested version is not loaded yet"}, 503))
        server.set_state("resnet", "2", "AVAILABLE")
        res = client.call("ovms", "infer", infer_payload(version=2))
    assert res.attempts == 2
    assert res.data[0]["data"] == [20.0, 1.0, 4.0]


def test_gateway_429_is_rate_limited_with_retry_after(srv: LocalServer, make_client) -> None:
    srv.script(ServerResponse.json({"error": "Too many requests"}, 429,
                                   headers={"Retry-After": "7", "x-ratelimit-limit-requests": "60",
                                            "x-ratelimit-remaining-requests": "0",
                                            "x-ratelimit-reset-requests": "7s"}))
    with make_client(srv.url) as client:
        with pytest.raises(RateLimited) as info:
            client.call("ovms", "infer", infer_payload())
    assert info.value.retry_after == 7.0
    assert info.value.status == 429
    backend = OvmsBackend(BackendConfig(name="ovms", base_url=srv.url))
    assert backend.rate_limit_info(info.value.response).limit_requests == 60


def test_rate_limited_protocol_answer_is_ovms_shaped(srv: LocalServer) -> None:
    from ipfs_accelerate_py.server import ServerRequest
    from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

    resp = OvmsServer().rate_limited(ServerRequest("POST", "/v2/models/resnet/infer"),
                                     RateLimitInfo(retry_after=2.5))
    assert resp.status == 429 and resp.headers["retry-after"] == "3"
    assert json.loads(resp.body) == {"error": "rate limit exceeded"}


@pytest.mark.parametrize("answer, fragment", [
    (ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"), "HTML"),
    (ServerResponse.text("", 200, "application/json"), "empty body"),
    (ServerResponse.text('{"model_name": "resnet", "outp', 200, "application/json"), "malformed JSON"),
    (ServerResponse.json({"model_name": "resnet"}), "without 'outputs'"),
])
def test_broken_answers_are_transient(srv: LocalServer, make_client, answer: ServerResponse,
                                      fragment: str) -> None:
    srv.script(answer)
    with make_client(srv.url) as client:
        with pytest.raises(TransientError) as info:
            client.call("ovms", "infer", infer_payload())
    assert fragment in str(info.value)


def test_auth_failure_never_shows_the_key(make_client) -> None:
    with LocalServer(OvmsServer(api_key="test-key-2")) as srv:
        with make_client(srv.url) as client:
            with pytest.raises(AuthError) as info:
                client.call("ovms", "server_metadata", {})
        assert srv.last.header("authorization") == f"Bearer {fake_key(1)}"
        with make_client(srv.url, keys=[fake_key(2)]) as client:
            assert client.call("ovms", "server_metadata", {}).data["name"]
    assert fake_key(1) not in str(info.value) and fake_key(1) not in repr(info.value)
    assert info.value.status == 401


# ---------------------------------------------------------------------- configuration
def test_env_base_url_model_and_key_are_honoured(srv: LocalServer, make_client,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVMS_API_URL", srv.url)
    monkeypatch.setenv("OVMS_MODEL", "resnet")
    monkeypatch.setenv("OVMS_VERSION", "2")
    monkeypatch.setenv("OVMS_API_KEY", fake_key(3))
    with make_client(None, keys=[]) as client:
        res = client.call("ovms", "infer", {"inputs": infer_payload()["inputs"]})
    assert srv.last.path == "/v2/models/resnet/versions/2/infer"
    assert srv.last.header("authorization") == f"Bearer {fake_key(3)}"
    assert res.data[0]["data"][0] == 20.0


def test_configured_base_url_wins_and_metadata_keys_map() -> None:
    backend = OvmsBackend(BackendConfig(name="ovms", base_url="http://ovms.internal:8001/"))
    assert backend.base_url == "http://ovms.internal:8001"
    assert OvmsBackend(BackendConfig(name="ovms")).base_url == "http://localhost:9000"
    meta = {"ovms_api_url": "http://h:9", "ovms_model": "m", "ovms_version": "3",
            "ovms_api_key": fake_key(4)}
    assert OvmsBackend.base_url_from(meta, environ={}) == "http://h:9"
    assert OvmsBackend.options_from(meta, environ={}) == {"model": "m", "version": "3"}
    (key,) = OvmsBackend.keys_from(meta, environ={})
    assert key.reveal() == fake_key(4) and fake_key(4) not in repr(key)


def test_model_names_are_escaped_in_the_path(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(NotFound):
            client.call("ovms", "model_metadata", {"model": "a/b c"})
    assert srv.last.path == "/v2/models/a%2Fb%20c"
