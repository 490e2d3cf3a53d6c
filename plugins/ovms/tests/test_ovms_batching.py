"""Coalescing queued single-instance infer requests into one KServe v2 call, over real HTTP."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py import BackendConfig, Request
from ipfs_accelerate_py.errors import CountMismatch, TransientError
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_ovms.backend import OvmsBackend


def single(row: list[float], model: str = "resnet", **extra: object) -> dict:
    return {"model": model, "inputs": [{"name": "0", "shape": [1, 4], "datatype": "FP32",
                                        "data": row}], **extra}


def rows(n: int) -> list[list[float]]:
    return [[float(i), float(i + 1), float(i + 2), float(i + 3)] for i in range(n)]


def infer_calls(srv: LocalServer) -> list:
    return [r for r in srv.requests if r.path.endswith("/infer")]


def test_queued_single_requests_become_one_call_split_by_row(srv: LocalServer, make_client,
                                                             hold_worker) -> None:
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("ovms", "infer", single(r, version=1, id=f"r{i}"))
                   for i, r in enumerate(rows(5))]
        release.set()
        results = [f.result(10) for f in futures]
    (call,) = infer_calls(srv)
    assert call.path == "/v2/models/resnet/versions/1/infer"
    body = json.loads(call.body)
    assert body == {"inputs": [{"name": "0", "shape": [5, 4], "datatype": "FP32",
                                "data": [x for r in rows(5) for x in r]}]}
    for i, (res, row) in enumerate(zip(results, rows(5))):
        assert res.data == [{"name": "1463", "shape": [1, 3], "datatype": "FP32",
                             "data": [sum(row), min(row), max(row)]}]
        assert res.raw["id"] == f"r{i}" and res.raw["model_version"] == "1"
        assert res.request_id == futures[i].request_id


def test_different_versions_models_or_opt_outs_are_not_mixed(srv: LocalServer, make_client,
                                                             hold_worker) -> None:
    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("ovms", "infer", single(r, version=v))
                   for r, v in zip(rows(4), (1, 2, 1, 2))]
        futures.append(client.submit("ovms", "infer", single(rows(1)[0], version=1, batch=False)))
        dummy = client.submit("ovms", "infer", {"model": "dummy", "inputs": [
            {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]})
        release.set()
        results = [f.result(10) for f in futures]
        assert dummy.result(10).data[0]["data"] == [1.0] * 10
    calls = infer_calls(srv)
    shapes = sorted((c.path, json.loads(c.body)["inputs"][0]["shape"][0]) for c in calls)
    assert shapes == [("/v2/models/dummy/infer", 1), ("/v2/models/resnet/versions/1/infer", 1),
                      ("/v2/models/resnet/versions/1/infer", 2),
                      ("/v2/models/resnet/versions/2/infer", 2)]
    assert [r.data[0]["data"][0] for r in results] == [6.0, 20.0, 14.0, 36.0, 6.0]


def test_max_batch_size_option_caps_each_call(srv: LocalServer, make_client, hold_worker) -> None:
    with make_client(srv.url, concurrency=1, options={"max_batch_size": 2}) as client:
        release = hold_worker(srv, client)
        futures = [client.submit("ovms", "infer", single(r)) for r in rows(5)]
        release.set()
        results = [f.result(10) for f in futures]
    sizes = [json.loads(c.body)["inputs"][0]["shape"][0] for c in infer_calls(srv)]
    assert sorted(sizes) == [1, 2, 2]
    assert [r.data[0]["data"][1] for r in results] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_lone_request_is_sent_after_the_window(srv: LocalServer, make_client) -> None:
    with make_client(srv.url, batch_window=0.05) as client:
        res = client.call("ovms", "infer", single(rows(1)[0]))
    assert json.loads(srv.last.body)["inputs"][0]["shape"] == [1, 4]
    assert res.data[0]["data"] == [12.0, 0.0, 3.0]


def test_a_batch_answer_with_the_wrong_row_count_fails_every_request(srv: LocalServer, make_client,
                                                                     hold_worker) -> None:
    def short_answer(req) -> ServerResponse:
        return ServerResponse.json({"model_name": "resnet", "model_version": "2", "id": "",
                                    "outputs": [{"name": "1463", "shape": [2, 3], "datatype": "FP32",
                                                 "data": [1, 2, 3, 4, 5, 6]}]})

    with make_client(srv.url, concurrency=1) as client:
        release = hold_worker(srv, client)
        srv.script(short_answer)
        futures = [client.submit("ovms", "infer", single(r)) for r in rows(3)]
        release.set()
        errors = [f.exception(10) for f in futures]
    assert len(infer_calls(srv)) == 1
    assert all(isinstance(e, CountMismatch) and (e.expected, e.received) == (3, 2) for e in errors)
    assert "expected 3 rows for 3 inputs, received 2" in str(errors[0])


def test_split_batch_checks_element_counts_and_outputs() -> None:
    backend = OvmsBackend(BackendConfig(name="ovms", base_url="http://127.0.0.1:1"))
    reqs = [Request(operation="infer", payload=single(r), backend="ovms") for r in rows(2)]
    assert backend.batch_key(reqs[0]) == backend.batch_key(reqs[1]) is not None
    merged = backend.merge_batch(reqs)
    assert merged.payload["inputs"][0]["shape"] == [2, 4]
    assert merged.request_id not in {r.request_id for r in reqs}
    bad_count = Result(raw={"outputs": [{"name": "o", "shape": [2, 3], "datatype": "FP32",
                                         "data": [1, 2, 3, 4, 5]}]})
    with pytest.raises(TransientError, match="5 elements, expected 6"):
        backend.split_batch(reqs, bad_count)
    with pytest.raises(TransientError, match="without outputs"):
        backend.split_batch(reqs, Result(raw={"model_name": "resnet"}))
    binary = Result(raw={"outputs": [{"name": "o", "shape": [2, 3], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 24}}]})
    with pytest.raises(TransientError, match="binary"):
        backend.split_batch(reqs, binary)


def test_only_single_instance_requests_have_a_batch_key() -> None:
    backend = OvmsBackend(BackendConfig(name="ovms", base_url="http://127.0.0.1:1"))
    two_rows = {"model": "resnet", "inputs": [{"name": "0", "shape": [2, 4], "datatype": "FP32",
                                               "data": [0.0] * 8}]}
    assert backend.batch_key(Request(operation="infer", payload=two_rows)) is None
    assert backend.batch_key(Request(operation="predict", payload={"model": "m", "instances": [[1]]})) is None
    bad = single([1.0, 2.0])
    assert backend.batch_key(Request(operation="infer", payload=bad)) is None
    off = OvmsBackend(BackendConfig(name="ovms", base_url="http://127.0.0.1:1",
                                    options={"batching": False}))
    assert off.batch_key(Request(operation="infer", payload=single([0.0] * 4))) is None
