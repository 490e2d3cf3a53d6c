"""OVMS TF-Serving-style REST (/v1) through the pipeline, over real HTTP."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.errors import InvalidRequest, NotFound, TransientError
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer

ROWS = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 2.0]]


def test_row_format_predict_pins_the_version_in_the_url(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        res = client.call("ovms", "predict", {"model": "resnet", "version": 2, "instances": ROWS,
                                              "signature_name": "serving_default"})
    req = srv.last
    assert (req.method, req.path) == ("POST", "/v1/models/resnet/versions/2:predict")
    # the original system put "version" in this body, where OVMS ignores it
    assert json.loads(req.body) == {"instances": ROWS, "signature_name": "serving_default"}
    assert res.data == [[20.0, 1.0, 4.0], [4.0, 0.0, 2.0]]


def test_columnar_predict_returns_outputs(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        res = client.call("ovms", "predict", {"model": "resnet", "inputs": {"0": ROWS}})
    assert srv.last.path == "/v1/models/resnet:predict"
    assert json.loads(srv.last.body) == {"inputs": {"0": ROWS}}
    assert res.data == [[20.0, 1.0, 4.0], [4.0, 0.0, 2.0]]


def test_predict_needs_exactly_one_format(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        for payload in ({"model": "resnet"}, {"model": "resnet", "instances": ROWS, "inputs": ROWS}):
            with pytest.raises(InvalidRequest, match="exactly one"):
                client.call("ovms", "predict", payload)
    assert srv.requests == []


def test_predict_errors(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        with pytest.raises(NotFound):
            client.call("ovms", "predict", {"model": "resnet", "version": 7, "instances": ROWS})
        with pytest.raises(InvalidRequest) as info:
            client.call("ovms", "predict", {"model": "resnet", "instances": [[1.0, 2.0]]})
        assert info.value.message == "Invalid input shape"
        srv.script(ServerResponse.json({"outputs": [[1.0]]}))
        with pytest.raises(TransientError, match="without 'predictions'"):
            client.call("ovms", "predict", {"model": "resnet", "instances": ROWS})


def test_model_status_metadata_and_config(srv: LocalServer, make_client) -> None:
    with make_client(srv.url) as client:
        status = client.call("ovms", "model_status", {"model": "resnet"})
        one = client.call("ovms", "model_status", {"model": "resnet", "version": 1})
        meta = client.call("ovms", "tfs_metadata", {"model": "resnet", "version": 2})
        models = client.call("ovms", "list_models", {})
    assert [r.path for r in srv.requests] == ["/v1/models/resnet", "/v1/models/resnet/versions/1",
                                              "/v1/models/resnet/versions/2/metadata", "/v1/config"]
    assert [s["version"] for s in status.data] == ["1", "2"]
    assert one.data == [{"version": "1", "state": "AVAILABLE",
                         "status": {"error_code": "OK", "error_message": ""}}]
    assert meta.data["modelSpec"] == {"name": "resnet", "signatureName": "", "version": "2"}
    assert [m["name"] for m in models.data] == ["dummy", "resnet"]
    assert [v["version"] for v in models.data[1]["versions"]] == ["1", "2"]
