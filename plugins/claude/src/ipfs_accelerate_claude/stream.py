"""Parse the Messages API's SSE stream into :class:`StreamChunk` objects.

Event types: ``message_start`` (model, input usage), ``content_block_start`` (a text block,
or a ``tool_use`` block with id and name), ``content_block_delta`` (``text_delta`` or
``input_json_delta``), ``content_block_stop``, ``message_delta`` (stop_reason, cumulative
output usage), ``message_stop`` (the terminator), ``ping`` (ignored) and ``error``
(raised, classified).  Unknown event types are ignored, as Anthropic asks of clients.

Nothing is yielded for ``message_start``: until real content arrives an error event is
still retried like any failed request.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator

from ipfs_accelerate_py.errors import TransientError
from ipfs_accelerate_py.results import IncompleteStream, StreamChunk, ToolCallDelta
from ipfs_accelerate_py.wire.sse import iter_sse

from .usage import anthropic_usage

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from .backend import ClaudeBackend


def iter_message_stream(backend: ClaudeBackend, response: requests.Response) -> Iterator[StreamChunk]:
    model: str | None = None
    input_tokens: int | None = None
    tool_index: dict[int, int] = {}  # content block index -> tool call ordinal
    for sse in iter_sse(response):
        try:
            event = json.loads(sse.data)
        except ValueError:
            raise TransientError(f"claude stream: malformed JSON in a {sse.event or 'data'} event",
                                 code="malformed_stream", backend=backend.name,
                                 request_id=backend.provider_request_id(response)) from None
        if not isinstance(event, dict):
            continue
        kind = event.get("type") or sse.event
        if kind == "message_start":
            message = event.get("message") or {}
            model = message.get("model")
            usage = message.get("usage") or {}
            input_tokens = usage.get("input_tokens")
            start_usage = usage
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            index = int(event.get("index", 0))
            if block.get("type") == "tool_use":
                ordinal = tool_index.setdefault(index, len(tool_index))
                yield StreamChunk(tool_calls=(ToolCallDelta(ordinal, id=block.get("id"),
                                                            name=block.get("name")),),
                                  model=model, raw=event)
            elif block.get("type") == "text" and block.get("text"):
                yield StreamChunk(text=block["text"], model=model, raw=event)
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                yield StreamChunk(text=str(delta.get("text") or ""), model=model, raw=event)
            elif dtype == "input_json_delta":
                index = int(event.get("index", 0))
                ordinal = tool_index.setdefault(index, len(tool_index))
                yield StreamChunk(tool_calls=(ToolCallDelta(
                    ordinal, arguments=str(delta.get("partial_json") or "")),), model=model, raw=event)
            # thinking_delta, signature_delta, citations_delta: not part of the answer text
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            usage = event.get("usage") or {}
            prompt = usage.get("input_tokens") if usage.get("input_tokens") is not None else input_tokens
            # Cache counts come in message_start (message_delta may repeat them, cumulative).
            cache = {k: usage.get(k, start_usage.get(k)) for k in
                     ("cache_read_input_tokens", "cache_creation_input_tokens")}
            yield StreamChunk(finish_reason=delta.get("stop_reason"),
                              usage=anthropic_usage(prompt, usage.get("output_tokens"), cache)
                              if usage else None,
                              model=model, raw=event)
        elif kind == "message_stop":
            return
        elif kind == "error":
            raise backend.stream_error(event, response)
        # ping, content_block_stop and unknown event types carry nothing we need
    raise IncompleteStream("claude stream ended without message_stop")
