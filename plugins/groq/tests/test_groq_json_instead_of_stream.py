"""A streamed request answered with the complete JSON body (a server or proxy that does
not stream) is returned as a one-chunk stream: sent once, never retried."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, RetryPolicy
from ipfs_accelerate_py.server import ServerRequest, ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_groq.server import GroqServer

CASES: list[tuple[str, dict[str, Any]]] = [
    ("chat", {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "Say hello"}]}),
]


def asked_to_stream(req: ServerRequest) -> bool:
    body = json.loads(req.body) if req.body else {}
    return body.get("stream") is True or "stream" in req.path


@pytest.mark.parametrize("operation,payload", CASES)
def test_json_answer_to_a_streamed_request_is_one_chunk(operation: str,
                                                        payload: dict[str, Any]) -> None:
    with LocalServer(GroqServer()) as srv, Client(
            [BackendConfig(name="groq", keys=["test-key-1"], base_url=srv.url + "/openai/v1")],
            ClientConfig(retry=RetryPolicy(max_attempts=3, base_delay=0.01))) as client:
        whole = client.call("groq", operation, payload)
        assert whole.text
        srv.script(ServerResponse.json(whole.raw))
        stream = client.stream("groq", operation, payload)
        chunks = list(stream)
        streamed = stream.collect()
    assert asked_to_stream(srv.last) and not asked_to_stream(srv.requests[0])
    assert len(srv.requests) == 2  # the streamed request went out once
    assert len(chunks) == 1 and chunks[0].raw == whole.raw
    assert (streamed.text, streamed.usage) == (whole.text, whole.usage)
    assert streamed.finish_reason == (whole.finish_reason or "stop")
    assert streamed.attempts == 1

