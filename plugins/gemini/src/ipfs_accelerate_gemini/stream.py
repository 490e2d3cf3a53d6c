"""Parse ``streamGenerateContent?alt=sse``: every ``data:`` event is a whole
GenerateContentResponse carrying the next piece of the candidate.

The terminator is a chunk whose candidate has a ``finishReason``; a stream that ends
without one was cut and raises :class:`IncompleteStream`.  An ``{"error": ...}`` chunk is
raised as a classified error; a filtered prompt or answer as ContentFiltered.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator

import requests

from ipfs_accelerate_py.errors import TransientError
from ipfs_accelerate_py.results import IncompleteStream, StreamChunk, ToolCallDelta
from ipfs_accelerate_py.wire.sse import iter_sse

if TYPE_CHECKING:  # pragma: no cover
    from ipfs_accelerate_py.request import Request

    from .backend import GeminiBackend


def iter_generate_stream(backend: GeminiBackend, request: Request,
                         response: requests.Response) -> Iterator[StreamChunk]:
    from .backend import read_candidate, read_usage

    tools = 0
    finished = False
    events = iter_sse(response)
    while True:
        try:
            sse = next(events)
        except StopIteration:
            break
        except (requests.RequestException, OSError):
            if finished:  # the answer was complete; only the connection's end was lost
                return
            raise
        try:
            chunk = json.loads(sse.data)
        except ValueError:
            raise TransientError("gemini stream: malformed JSON in an event", code="malformed_stream",
                                 backend=backend.name) from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            raise backend.stream_error(chunk, response)
        backend.check_blocked(chunk, None)
        candidates = chunk.get("candidates") or []
        text, calls, finish = read_candidate(candidates[0] if candidates else None)
        deltas = []
        for call in calls:
            deltas.append(ToolCallDelta(tools, id=call["id"], name=call["name"],
                                        arguments=call["arguments"]))
            tools += 1
        finished = finished or bool(finish)
        yield StreamChunk(text=text, tool_calls=tuple(deltas), finish_reason=finish,
                          usage=read_usage(chunk.get("usageMetadata")),
                          model=chunk.get("modelVersion") or request.payload.get("model"), raw=chunk)
    if not finished:
        raise IncompleteStream("gemini stream ended without a finishReason")
