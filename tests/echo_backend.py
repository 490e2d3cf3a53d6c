"""A small backend used by the core's tests to drive the whole pipeline over real HTTP.

Protocol: ``POST /echo`` answers ``{"echo": <body>, "key": <bearer>}`` with OpenAI-style
rate-limit headers; ``POST /stream`` answers SSE events ``{"text": ...}`` ending with
``[DONE]``; ``POST /embed`` takes ``{"inputs": [...]}`` and answers one vector per input.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Hashable, Iterator, Sequence

from ipfs_accelerate_py import hookimpl
from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import TransientError
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import IncompleteStream, Result, StreamChunk, Usage
from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers
from ipfs_accelerate_py.wire.sse import format_sse, iter_sse


class EchoServer(ProtocolServer):
    name = "echo"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.lock = threading.Lock()
        self.embed_calls: list[int] = []

    @route("POST", "/echo")
    def echo(self, req: ServerRequest) -> ServerResponse:
        body = req.json()
        return ServerResponse.json({"echo": body, "key": req.bearer_token(),
                                    "usage": {"total_tokens": 3}},
                                   headers={"x-request-id": "srv-" + str(body.get("n", ""))})

    @route("POST", "/stream")
    def stream(self, req: ServerRequest) -> ServerResponse:
        words = req.json().get("words", ["a", "b"])

        def gen() -> Iterator[bytes]:
            for w in words:
                yield format_sse({"text": w})
            yield format_sse("[DONE]")

        return ServerResponse.stream(gen())

    @route("POST", "/embed")
    def embed(self, req: ServerRequest) -> ServerResponse:
        inputs = req.json()["inputs"]
        with self.lock:
            self.embed_calls.append(len(inputs))
        return ServerResponse.json({"vectors": [[float(len(s))] for s in inputs]})

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        return {"x-ratelimit-limit-requests": str(int(info.limit_requests or 0)),
                "x-ratelimit-remaining-requests": str(int(info.remaining_requests or 0))}


class EchoBackend(Backend):
    name = "echo"
    default_base_url = "http://127.0.0.1:9"
    operations = {"echo": "echo the payload", "stream": "stream words", "embed": "batched embed"}
    streaming_operations = frozenset({"stream"})
    key_required = False

    def build_echo(self, request: Request, key: Any) -> HttpRequest:
        return HttpRequest("POST", self.url("/echo"), json=dict(request.payload))

    def parse_echo(self, request: Request, response: Any) -> Result:
        body = self.decode_json(response)
        return Result(text=json.dumps(body["echo"], sort_keys=True), raw=body, data=body.get("key"),
                      usage=Usage.of(0, 0, body.get("usage", {}).get("total_tokens")),
                      request_id=response.headers.get("x-request-id"))

    def build_stream(self, request: Request, key: Any) -> HttpRequest:
        return HttpRequest("POST", self.url("/stream"), json=dict(request.payload))

    def stream_stream(self, request: Request, response: Any) -> Iterator[StreamChunk]:
        for ev in iter_sse(response):
            if ev.data == "[DONE]":
                return
            obj = ev.json()
            if "error" in obj:
                raise TransientError(obj["error"], backend=self.name)
            yield StreamChunk(text=obj["text"])
        raise IncompleteStream("no [DONE]")

    def build_embed(self, request: Request, key: Any) -> HttpRequest:
        return HttpRequest("POST", self.url("/embed"), json={"inputs": list(request.payload["inputs"])})

    def parse_embed(self, request: Request, response: Any) -> Result:
        return Result(data=self.decode_json(response)["vectors"])

    def batch_key(self, request: Request) -> Hashable | None:
        return ("embed",) if request.operation == "embed" and len(request.payload["inputs"]) == 1 else None

    def max_batch_size(self, request: Request) -> int:
        return 8

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        return requests[0].evolve(payload={"inputs": [r.payload["inputs"][0] for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        vectors = result.data
        if len(vectors) != len(requests):
            raise TransientError("count mismatch", backend=self.name)
        return [Result(data=[v]) for v in vectors]

    def rate_limit_info(self, response: Any) -> RateLimitInfo | None:
        info = parse_openai_headers(response.headers)
        return None if info.is_empty() else info


@hookimpl
def accelerate_backends() -> list[type[Backend]]:
    return [EchoBackend]
