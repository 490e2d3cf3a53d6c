"""Cache entries and their self-checking encoding.

An entry's body is ``MAGIC + sha256(json)[:16] + json``, and the JSON names the entry's
own namespace and key: a torn write, a flipped bit, or a body that ended up under another
key decodes to None (a miss), never to a wrong answer.
"""

from __future__ import annotations

from decimal import Decimal

import hashlib
import json
from typing import Any

import attrs

from ..results import Result, StreamChunk, ToolCall, ToolCallDelta, Usage
from .keys import Uncacheable

MAGIC = b"IAC1"
_DIGEST = 16


@attrs.frozen
class CacheEntry:
    """One stored answer, with what management needs to find it (no request data)."""

    namespace: str
    key: str
    backend: str
    operation: str
    model: str | None
    created: float  # wall-clock seconds (time.time()): entries outlive processes
    expires: float | None
    body: bytes = attrs.field(repr=False)

    @property
    def size(self) -> int:
        return len(self.body) + len(self.key) + len(self.namespace)

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@attrs.frozen
class CacheHit:
    """Where a cached result came from: ``Result.cache`` of a hit."""

    key: str
    namespace: str
    store: str
    created: float
    kind: str = "exact"  # or "semantic"
    similarity: float | None = None


def encode_result(namespace: str, key: str, r: Result) -> bytes:
    doc = {"ns": namespace, "k": key, "text": r.text,
           "tool_calls": [[t.id, t.name, t.arguments, t.type] for t in r.tool_calls],
           "finish_reason": r.finish_reason,
           "usage": None if r.usage is None else [r.usage.prompt_tokens,
                                                  r.usage.completion_tokens,
                                                  r.usage.total_tokens],
           "model": r.model, "data": r.data, "raw": r.raw,
           "provider_request_id": r.provider_request_id}
    try:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Uncacheable(f"the result is not JSON ({exc})") from None
    data = text.encode("utf-8", "surrogatepass")
    return MAGIC + hashlib.sha256(data).digest()[:_DIGEST] + data


def decode_body(namespace: str, key: str, body: Any) -> dict[str, Any] | None:
    """The stored result's fields, or None when the body is not intact or not this entry's."""
    try:
        body = bytes(body)
        if not body.startswith(MAGIC):
            return None
        head = len(MAGIC)
        digest, data = body[head:head + _DIGEST], body[head + _DIGEST:]
        if hashlib.sha256(data).digest()[:_DIGEST] != digest:
            return None
        doc = json.loads(data.decode("utf-8", "surrogatepass"))
        if not isinstance(doc, dict) or doc.get("ns") != namespace or doc.get("k") != key:
            return None
        return doc
    except (TypeError, ValueError, UnicodeDecodeError):
        return None


def result_from(doc: dict[str, Any], hit: CacheHit, request_id: str, backend: str) -> Result:
    u = doc.get("usage")
    return Result(text=doc.get("text"),
                  tool_calls=tuple(ToolCall(*t) for t in doc.get("tool_calls") or ()),
                  finish_reason=doc.get("finish_reason"),
                  usage=Usage(*u) if u else None, model=doc.get("model"),
                  request_id=request_id, raw=doc.get("raw"), data=doc.get("data"),
                  backend=backend, provider_request_id=doc.get("provider_request_id"),
                  key_id=None, attempts=0, cache=hit, cost=Decimal(0))  # a hit costs nothing


def replay_chunk(r: Result) -> StreamChunk:
    """A cached answer as one stream chunk (a streamed request replays it as a stream)."""
    return StreamChunk(text=r.text or "",
                       tool_calls=tuple(ToolCallDelta(i, t.id, t.name, t.arguments)
                                        for i, t in enumerate(r.tool_calls)),
                       finish_reason=r.finish_reason, usage=r.usage, model=r.model)
