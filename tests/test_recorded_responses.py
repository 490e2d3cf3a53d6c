"""Backends against answers written from the providers' own API descriptions, not from our
fakes: one misreading of a protocol cannot then hide by being made on both sides.

Each ``tests/recorded/*.json`` holds one documented request and the documented answer
(``source`` names the document and the example), sanitised (no real ids or keys).  The
answer is served over real HTTP by a scripted ``LocalServer``; the test checks the request
reached the documented path and what the backend made of the answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipfs_accelerate_py import errors
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_py.wire.sse import format_sse
from ipfs_accelerate_sim.testing import LocalServer, make_client

RECORDED = sorted(Path(__file__).with_name("recorded").glob("*.json"))


def _answer(rec: dict) -> ServerResponse:
    resp = rec["response"]
    if "events" in resp:  # SSE
        parts = [format_sse(e if isinstance(e, str) else json.dumps(e)) for e in resp["events"]]
        return ServerResponse.stream(iter(parts), resp["headers"]["content-type"], resp["status"])
    if "lines" in resp:  # NDJSON
        parts = [json.dumps(line).encode() + b"\n" for line in resp["lines"]]
        return ServerResponse.stream(iter(parts), resp["headers"]["content-type"], resp["status"])
    return ServerResponse(resp["status"], dict(resp["headers"]), json.dumps(resp["body"]).encode())


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_backend_reads_the_documented_answer(path: Path):
    rec = json.loads(path.read_text())
    req, expect = rec["request"], rec["expect"]
    assert rec["source"]
    with LocalServer() as server:
        server.script(_answer(rec))
        with make_client(req["backend"], server.url + req["base_path"], attempts=1) as client:
            if "error" in expect:
                with pytest.raises(getattr(errors, expect["error"])) as info:
                    client.call(req["backend"], req["operation"], req["payload"])
                assert info.value.status == expect["status"]
                assert info.value.code == expect["code"]
                result = None
            elif req.get("stream"):
                result = client.stream(req["backend"], req["operation"], req["payload"]).collect()
            else:
                result = client.call(req["backend"], req["operation"], req["payload"])
        assert [r.path for r in server.requests] == [req["path"]]
        assert server.last.json()["model"] == req["payload"]["model"]
    if result is None:
        return
    assert result.text == expect["text"]
    if "finish_reason" in expect:
        assert result.finish_reason == expect["finish_reason"]
    if "model" in expect:
        assert result.model == expect["model"]
    if "usage" in expect:
        u = result.usage
        assert [u.prompt_tokens, u.completion_tokens, u.total_tokens] == expect["usage"]
    if "provider_request_id" in expect:
        assert result.provider_request_id == expect["provider_request_id"]
    if "tool_calls" in expect:
        assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == \
               [tuple(c) for c in expect["tool_calls"]]
