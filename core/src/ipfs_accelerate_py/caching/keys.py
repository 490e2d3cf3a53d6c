"""The exact cache key: a canonical form of everything that determines an answer.

The rule (docs/caching.md): the key is SHA-256 over canonical JSON of
``[version, endpoint, operation, payload]``, where *endpoint* is the backend's endpoint id
(``openai@https://api.openai.com/v1``: name and base URL, never a credential) and
*payload* is the request's payload minus the fields that cannot change the answer's
content.  Everything else counts -- messages, system prompt, tools, tool_choice,
temperature, top_p, seed, max_tokens, response_format, n, logprobs, stop, the model...
A field we do not know is relevant by default: a new provider option must never make two
different requests share an answer.  The API key is never part of a request's payload,
so it never reaches the key.

Canonical JSON: keys sorted, no whitespace, a float with an integral value written as the
integer (``1.0`` == ``1``), booleans kept apart from numbers (``true`` != ``1``), NaN and
infinities refused (the request is then simply not cached).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

KEY_VERSION = 1

#: Fields that never change an answer's content, for every operation: who asked
#: (``user``, ``metadata``, ``store``: OpenAI's end-user id and stored-completion
#: bookkeeping) and how the answer is delivered (``stream``, ``stream_options``: a
#: streamed and an unstreamed answer are the same answer; the cache replays either way).
IGNORED_FIELDS: frozenset[str] = frozenset({"user", "metadata", "store", "stream",
                                            "stream_options"})

#: Extra fields left out per operation (none today; an entry here must be a field that
#: provably does not change that operation's output).
IGNORED_BY_OPERATION: Mapping[str, frozenset[str]] = {}

#: Operations without side effects whose answer depends only on the request: the only
#: ones cached.  A backend may name its own in ``cacheable_operations``.
PURE_OPERATIONS: frozenset[str] = frozenset({
    "chat", "completions", "completion", "messages", "generate", "chatqna",
    "embeddings", "embed", "batch_embed", "rerank", "moderations", "translate",
    "count_tokens", "infer"})

#: Chat-like operations (the semantic cache's domain).
CHAT_OPERATIONS: frozenset[str] = frozenset({"chat", "completions", "completion", "messages",
                                             "generate", "chatqna"})


class Uncacheable(ValueError):
    """The payload has no canonical form (a NaN, bytes, an object): not cached."""


def _canon(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Uncacheable("a non-finite number")
        return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise Uncacheable(f"a non-string field name {k!r}")
            out[k] = _canon(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    raise Uncacheable(f"a {type(value).__name__} value")


def relevant_payload(operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload without the fields that cannot change ``operation``'s answer."""
    ignored = IGNORED_FIELDS | IGNORED_BY_OPERATION.get(operation, frozenset())
    return {k: v for k, v in payload.items() if k not in ignored}


def canonical_json(value: Any) -> str:
    return json.dumps(_canon(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def cache_key(endpoint: str, operation: str, payload: Mapping[str, Any]) -> str:
    """The exact key (64 hex digits).  Raises :class:`Uncacheable`."""
    text = canonical_json([KEY_VERSION, endpoint, operation, relevant_payload(operation, payload)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def is_cacheable(backend: Any, operation: str) -> bool:
    own = getattr(backend, "cacheable_operations", None)
    return operation in (own if own is not None else PURE_OPERATIONS)
