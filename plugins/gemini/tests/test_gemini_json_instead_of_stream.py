"""A streamed request answered with the complete JSON body (a server or proxy that does
not stream) is returned as a one-chunk stream: sent once, never retried."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, RetryPolicy
from ipfs_accelerate_py.server import ServerRequest, ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_gemini.server import GeminiServer

CASES: list[tuple[str, dict[str, Any]]] = [
    ("generate", {"model": "gemini-sim-flash", "contents": [{"role": "user", "parts": [{"text": "hello"}]}]}),
    ("chat", {"model": "gemini-sim-flash", "contents": [{"role": "user", "parts": [{"text": "hello"}]}]}),
]


def asked_to_stream(req: ServerRequest) -> bool:
    body = json.loads(req.body) if req.body else {}
    return body.get("stream") is True or "stream" in req.path


@pytest.mark.parametrize("operation,payload", CASES)
def test_json_answer_to_a_streamed_request_is_one_chunk(operation: str,
                                                        payload: dict[str, Any]) -> None:
    with LocalServer(GeminiServer()) as srv, Client(
            [BackendConfig(name="gemini", keys=["test-key-1"], base_url=srv.url)],
            ClientConfig(retry=RetryPolicy(max_attempts=3, base_delay=0.01))) as client:
        whole = client.call("gemini", operation, payload)
        assert whole.text
        srv.script(ServerResponse.json(whole.raw))
        stream = client.stream("gemini", operation, payload)
        chunks = list(stream)
        streamed = stream.collect()
    assert asked_to_stream(srv.last) and not asked_to_stream(srv.requests[0])
    assert len(srv.requests) == 2  # the streamed request went out once
    assert len(chunks) == 1 and chunks[0].raw == whole.raw
    assert (streamed.text, streamed.usage) == (whole.text, whole.usage)
    assert streamed.finish_reason == (whole.finish_reason or "stop")
    assert streamed.attempts == 1



def test_a_json_array_stream_without_alt_sse_is_joined_into_one_chunk() -> None:
    # streamGenerateContent without alt=sse answers the stream's pieces as one JSON array.
    pieces = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                         "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
         "modelVersion": "gemini-sim-flash"},
    ]
    with LocalServer(GeminiServer()) as srv, Client(
            [BackendConfig(name="gemini", keys=["test-key-1"], base_url=srv.url)],
            ClientConfig(retry=RetryPolicy(max_attempts=3, base_delay=0.01))) as client:
        srv.script(ServerResponse.json(pieces))
        stream = client.stream("gemini", "generate", CASES[0][1])
        chunks = list(stream)
        res = stream.collect()
    assert len(chunks) == 1 and len(srv.requests) == 1
    assert (res.text, res.usage.total_tokens, res.finish_reason) == ("Hello", 5, "STOP")
