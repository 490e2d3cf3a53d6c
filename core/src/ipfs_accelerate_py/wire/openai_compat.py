"""The OpenAI-compatible wire shapes, client side.

Many services speak the same JSON: ``chat.completion`` bodies and ``chat.completion.chunk``
SSE streams ending in ``data: [DONE]``, legacy ``text_completion``, ``embedding`` lists,
``model`` lists and ``{"error": {"message", "type", "code", "param"}}`` error bodies.  This
module parses them into the core's :class:`~ipfs_accelerate_py.results.Result` and
:class:`~ipfs_accelerate_py.results.StreamChunk`, so every backend that speaks the dialect
stays glue.  It names no provider.  Rendering them (what protocol fakes do) is in
:mod:`ipfs_accelerate_py.wire.openai_server`, which no backend imports.

Parsers that can fail take ``make_error(cls, message, code) -> ProviderError`` so a backend
can attach its response (status, request id, retry hints) to the error it raises.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs

from ..errors import (
    AuthError,
    ConnectionFailed,
    ContentFiltered,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    RequestTimeout,
    TransientError,
    error_for_status,
)
from ..results import IncompleteStream, Result, StreamChunk, ToolCall, ToolCallDelta, Usage
from ..redaction import redact as core_redact
from .counts import check_count, order_by_index
from .sse import SSEEvent, iter_sse

ErrorFactory = Callable[[type[ProviderError], str, "str | None"], ProviderError]


def plain_error(cls: type[ProviderError], message: str, code: str | None = None) -> ProviderError:
    """The default :data:`ErrorFactory`: an error with no response attached."""
    return cls(message, code=code)


# ============================================================================ errors
#: Error codes that decide the class whatever the HTTP status says.
CODE_CLASSES: dict[str, type[ProviderError]] = {
    "context_length_exceeded": ContextTooLong,
    "string_above_max_length": ContextTooLong,
    "content_filter": ContentFiltered,
    "content_policy_violation": ContentFiltered,
    "invalid_prompt": ContentFiltered,
    "invalid_api_key": AuthError,
    "account_deactivated": AuthError,
    "unsupported_country_region_territory": AuthError,
    # Out of credit: waiting does not help and retrying only burns the budget, so it is an
    # auth-class (per-key, not retryable) error rather than RateLimited.
    "insufficient_quota": AuthError,
    "billing_hard_limit_reached": AuthError,
    "model_not_found": NotFound,
    "rate_limit_exceeded": RateLimited,
}

#: Error ``type`` values, used when the status says nothing (errors inside a stream).
TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request_error": InvalidRequest,
    "authentication_error": AuthError,
    "permission_error": AuthError,
    "not_found_error": NotFound,
    "rate_limit_error": RateLimited,
    "requests": RateLimited,
    "tokens": RateLimited,
    "server_error": TransientError,
    "api_error": TransientError,
    "overloaded_error": TransientError,
    "service_unavailable": TransientError,
    "timeout_error": RequestTimeout,
}

def redact(message: str) -> str:
    """The core redactor (kept here for the parsers that import it by this name)."""
    return core_redact(message)


@attrs.frozen
class ErrorInfo:
    """What an OpenAI-style error body says, and the class it maps to."""

    cls: type[ProviderError]
    message: str
    code: str | None = None
    type: str | None = None
    param: str | None = None


def _text_excerpt(status: int | None, text: str) -> str:
    text = (text or "").strip()
    where = f"HTTP {status}" if status is not None else "error"
    if not text:
        return f"{where} with an empty body"
    if text.startswith("<"):
        return f"{where} with a non-JSON (HTML) body"
    return f"{where}: {text[:300]}"


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for d in detail:
            if isinstance(d, Mapping):
                loc = ".".join(str(x) for x in d.get("loc") or ())
                parts.append(f"{loc}: {d.get('msg', '')}" if loc else str(d.get("msg", d)))
            else:
                parts.append(str(d))
        return "; ".join(parts)[:500] or "validation error"
    return str(detail)[:500]


def classify_error_body(status: int | None, body: Any, text: str = "") -> ErrorInfo:
    """Map an error answer to one class.

    ``body`` is the decoded JSON (or None if the body was not JSON; then ``text`` is used
    for the message).  Precedence: a known ``code`` (context_length_exceeded,
    content_filter, insufficient_quota...), then the HTTP status, then the error ``type``
    (for errors carried inside a 200 stream).  408 is a timeout; 409 (a lock conflict on
    the provider's side) is transient.
    """
    err: Any = None
    if isinstance(body, Mapping):
        err = body.get("error", body if body.get("object") == "error" else None)
    message: str
    code: str | None = None
    etype: str | None = None
    param: str | None = None
    if isinstance(err, Mapping):
        message = str(err.get("message") or json.dumps(err)[:300])
        raw_code = err.get("code")
        code = str(raw_code) if raw_code not in (None, "") else None
        etype = str(err["type"]) if err.get("type") else None
        param = str(err["param"]) if err.get("param") else None
    elif isinstance(err, str):
        message = err
        if isinstance(body, Mapping) and body.get("code") is not None:
            code = str(body["code"])
    elif isinstance(body, Mapping) and "detail" in body:  # FastAPI's HTTPException / 422 shapes
        message = _detail_text(body["detail"])
    elif isinstance(body, Mapping) and body.get("message"):
        message = str(body["message"])
        code = str(body["code"]) if body.get("code") is not None else None
        etype = str(body["type"]) if body.get("type") else None
    elif body is not None:
        message = _text_excerpt(status, json.dumps(body)[:300])
    else:
        message = _text_excerpt(status, text)
    cls: type[ProviderError] | None = CODE_CLASSES.get(code or "")
    if cls is None and code and "context_length" in code:
        cls = ContextTooLong
    if cls is None and status is not None and status >= 400:
        cls = TransientError if status == 409 else error_for_status(status)
    if cls is None and code and code.isdigit() and int(code) >= 400:
        cls = error_for_status(int(code))  # servers that put the status in "code"
    if cls is None:
        cls = TYPE_CLASSES.get(etype or "", TransientError)
    return ErrorInfo(cls, redact(message), code or etype, etype, param)


def classify_response(response: Any) -> ErrorInfo:
    """:func:`classify_error_body` for a ``requests.Response``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return classify_error_body(response.status_code, body, "" if body is not None else response.text)


def error_from_body(body: Any, make_error: ErrorFactory = plain_error,
                    status: int | None = None) -> ProviderError:
    info = classify_error_body(status, body)
    return make_error(info.cls, info.message, info.code)


def is_error_event(obj: Any) -> bool:
    """An ``{"error": ...}`` object (a null ``error`` field is not one) or ``{"object": "error"}``."""
    return isinstance(obj, Mapping) and (obj.get("error") not in (None, "", {})
                                         or obj.get("object") == "error")


# ============================================================================ client side
def parse_usage(obj: Any) -> Usage | None:
    """``{"prompt_tokens", "completion_tokens", "total_tokens"}`` -> Usage (None if absent),
    with ``prompt_tokens_details.cached_tokens`` and
    ``completion_tokens_details.reasoning_tokens`` where reported."""
    if not isinstance(obj, Mapping):
        return None
    prompt_details = obj.get("prompt_tokens_details")
    completion_details = obj.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else None
    reasoning = (completion_details.get("reasoning_tokens")
                 if isinstance(completion_details, Mapping) else None)
    return Usage.of(obj.get("prompt_tokens"), obj.get("completion_tokens"), obj.get("total_tokens"),
                    cached=_count(cached), reasoning=_count(reasoning))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    calls = []
    for tc in message.get("tool_calls") or ():
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        calls.append(ToolCall(id=tc.get("id"), name=str(fn.get("name") or ""),
                              arguments=args if isinstance(args, str) else json.dumps(args or {}),
                              type=str(tc.get("type") or "function")))
    legacy = message.get("function_call")  # the deprecated single-function form
    if isinstance(legacy, Mapping) and not calls:
        calls.append(ToolCall(id=None, name=str(legacy.get("name") or ""),
                              arguments=str(legacy.get("arguments") or "")))
    return tuple(calls)


def _choices(body: Any, make_error: ErrorFactory) -> list[Mapping[str, Any]]:
    choices = body.get("choices") if isinstance(body, Mapping) else None
    if not isinstance(choices, list) or not choices:
        if is_error_event(body):
            raise error_from_body(body, make_error)
        raise make_error(TransientError, "response has no choices", "malformed_response")
    return sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, Mapping) else 0)


def parse_chat_completion(body: Any, *, request_id: str | None = None,
                          make_error: ErrorFactory = plain_error) -> Result:
    """A ``chat.completion`` body -> Result.

    ``text``/``tool_calls``/``finish_reason`` come from the first choice; ``data`` lists
    every choice (``n`` > 1) as ``{"index", "text", "tool_calls", "finish_reason",
    "logprobs", "refusal"}``.  A ``content_filter`` finish reason is returned, not raised:
    the call succeeded and the caller decides.
    """
    choices = _choices(body, make_error)
    parsed = []
    for ch in choices:
        msg = ch.get("message") or {}
        parsed.append({"index": ch.get("index", 0), "text": msg.get("content"),
                       "tool_calls": _tool_calls(msg), "finish_reason": ch.get("finish_reason"),
                       "logprobs": ch.get("logprobs"), "refusal": msg.get("refusal")})
    first = parsed[0]
    return Result(text=first["text"] if first["text"] is not None else "",
                  tool_calls=first["tool_calls"], finish_reason=first["finish_reason"],
                  usage=parse_usage(body.get("usage")), model=body.get("model"),
                  request_id=request_id, raw=body, data=parsed)


def parse_completion(body: Any, *, request_id: str | None = None,
                     make_error: ErrorFactory = plain_error) -> Result:
    """A legacy ``text_completion`` body -> Result (``data`` lists every choice)."""
    choices = _choices(body, make_error)
    parsed = [{"index": ch.get("index", 0), "text": ch.get("text") or "",
               "finish_reason": ch.get("finish_reason"), "logprobs": ch.get("logprobs")}
              for ch in choices]
    return Result(text=parsed[0]["text"], finish_reason=parsed[0]["finish_reason"],
                  usage=parse_usage(body.get("usage")), model=body.get("model"),
                  request_id=request_id, raw=body, data=parsed)


def decode_base64_floats(value: str) -> list[float]:
    """A base64 ``encoding_format`` embedding: little-endian float32s."""
    raw = base64.b64decode(value)
    if len(raw) % 4:
        raise ValueError("base64 embedding is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def encode_base64_floats(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def parse_embeddings(body: Any, *, expected: int | None = None, request_id: str | None = None,
                     make_error: ErrorFactory = plain_error) -> Result:
    """An embedding list -> Result whose ``data`` is the vectors, in input order.

    Items are ordered by their ``index``; base64 items are decoded to floats.  With
    ``expected``, a count that does not match the inputs sent raises (never misassign).
    """
    items = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        if is_error_event(body):
            raise error_from_body(body, make_error)
        raise make_error(TransientError, "embeddings response has no data list", "malformed_response")
    if expected is not None:
        # Items carry their input's ``index``: each index once, put in input order.
        if any(isinstance(it, Mapping) and "index" in it for it in items):
            items = order_by_index("embeddings", expected, items, make_error=make_error)
        else:
            items = check_count("embeddings", expected, items, make_error)
    vectors: list[list[float]] = []
    try:
        for item in sorted(items, key=lambda it: int(it.get("index", 0))):
            emb = item["embedding"]
            vectors.append(decode_base64_floats(emb) if isinstance(emb, str) else [float(x) for x in emb])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise make_error(TransientError, f"malformed embedding item: {type(exc).__name__}",
                         "malformed_response") from None
    return Result(usage=parse_usage(body.get("usage")), model=body.get("model"),
                  request_id=request_id, raw=body, data=vectors)


def parse_model_list(body: Any, *, request_id: str | None = None,
                     make_error: ErrorFactory = plain_error) -> Result:
    """``{"object": "list", "data": [{"id", ...}]}`` -> Result whose ``data`` is the model dicts."""
    items = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(items, list) or not all(isinstance(m, Mapping) and "id" in m for m in items):
        raise make_error(TransientError, "model list response has no data list", "malformed_response")
    return Result(request_id=request_id, raw=body, data=[dict(m) for m in items])


def parse_model(body: Any, *, request_id: str | None = None,
                make_error: ErrorFactory = plain_error) -> Result:
    """One ``model`` object -> Result with ``model`` set to its id and ``data`` the dict."""
    if not isinstance(body, Mapping) or "id" not in body:
        raise make_error(TransientError, "model response has no id", "malformed_response")
    return Result(model=str(body["id"]), request_id=request_id, raw=body, data=dict(body))


def parse_chunk(obj: Mapping[str, Any]) -> StreamChunk:
    """One ``chat.completion.chunk`` (or legacy ``text_completion`` chunk) object -> StreamChunk."""
    text_parts: list[str] = []
    deltas: list[ToolCallDelta] = []
    finish: str | None = None
    for ch in obj.get("choices") or ():
        if ch.get("index", 0) != 0:  # n > 1 streams: only the first choice is followed
            continue
        delta = ch.get("delta")
        if isinstance(delta, Mapping):
            if delta.get("content"):
                text_parts.append(str(delta["content"]))
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                deltas.append(ToolCallDelta(index=int(tc.get("index", 0)), id=tc.get("id"),
                                            name=fn.get("name"), arguments=fn.get("arguments") or ""))
            legacy = delta.get("function_call")
            if isinstance(legacy, Mapping):
                deltas.append(ToolCallDelta(index=0, name=legacy.get("name"),
                                            arguments=legacy.get("arguments") or ""))
        elif ch.get("text"):
            text_parts.append(str(ch["text"]))  # legacy completions
        finish = ch.get("finish_reason") or finish
    return StreamChunk(text="".join(text_parts), tool_calls=tuple(deltas), finish_reason=finish,
                       usage=parse_usage(obj.get("usage")) if obj.get("usage") else None,
                       model=obj.get("model"), raw=obj)


def iter_stream_events(events: Iterable[SSEEvent],
                       make_error: ErrorFactory = plain_error) -> Iterator[StreamChunk]:
    """SSE events of a chat (or legacy completion) stream -> StreamChunks.

    Ends at ``data: [DONE]``; a stream that stops before it raises
    :class:`~ipfs_accelerate_py.results.IncompleteStream`.  An ``{"error": ...}`` event (or an
    ``event: error``) raises the classified error; a non-JSON event raises a transient
    ``malformed_response`` error.
    """
    for ev in events:
        data = ev.data.strip()
        if data == "[DONE]":
            return
        try:
            obj = json.loads(data)
        except ValueError:
            if ev.event == "error":  # an error event with a plain-text message
                raise make_error(TransientError, redact(data[:300]) or "stream error event",
                                 "stream_error") from None
            raise make_error(TransientError, f"malformed stream event: {data[:100]!r}",
                             "malformed_response") from None
        if ev.event == "error" or is_error_event(obj):
            raise error_from_body(obj if is_error_event(obj) else {"error": obj}, make_error)
        if not isinstance(obj, Mapping):
            raise make_error(TransientError, "stream event is not an object", "malformed_response")
        yield parse_chunk(obj)
    raise IncompleteStream("stream ended without its [DONE] terminator")


def safe_events(response: Any, make_error: ErrorFactory = plain_error) -> Iterator[SSEEvent]:
    """SSE events of a streaming response; a connection broken mid-read becomes a
    classified :class:`ConnectionFailed` instead of a transport exception."""
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error

    it = iter_sse(response)
    while True:
        try:
            ev = next(it)
        except StopIteration:
            return
        except (requests.RequestException, Urllib3Error, OSError) as exc:
            raise make_error(ConnectionFailed, f"stream connection broken: {type(exc).__name__}",
                             "stream_cut") from None
        yield ev


def iter_stream(response: Any, make_error: ErrorFactory = plain_error) -> Iterator[StreamChunk]:
    """:func:`iter_stream_events` over a streaming ``requests.Response``."""
    return iter_stream_events(safe_events(response, make_error), make_error)


def embedding_inputs(value: Any) -> int:
    """How many embeddings an ``input`` value asks for (a str or one token list is one)."""
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        if value and all(isinstance(x, int) for x in value):
            return 1
        return len(value)
    return 1


# ============================================================================ shared helpers
def count_tokens(text: str) -> int:
    """A deterministic stand-in tokenizer (fakes; backends' rough estimates): ~4 characters each."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def messages_text(messages: Any) -> str:
    """The text of a ``messages`` value (a list of messages, or a bare string)."""
    if isinstance(messages, str):
        return messages
    parts: list[str] = []
    for m in messages or ():
        if not isinstance(m, Mapping):
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "\n".join(parts)


# The server-rendering half lives in .openai_server (used only by protocol fakes); these
# names still resolve here, imported on first use, so importing this module loads none of it.
_SERVER_NAMES = frozenset({
    "CompatResponder", "STATUS_TYPES", "_WORDS", "_logprobs", "error_type_for_status",
    "ratelimit_headers", "render_chat_chunks", "render_chat_completion", "render_completion",
    "render_completion_chunks", "render_embeddings", "render_error", "render_model",
    "render_model_list", "render_tool_call", "retry_after_headers", "sse_body", "synth_text",
    "synth_vector", "usage_dict",
})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from . import openai_server

        return getattr(openai_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CODE_CLASSES", "TYPE_CLASSES", "ErrorFactory", "ErrorInfo", "classify_error_body",
    "classify_response", "count_tokens", "decode_base64_floats", "embedding_inputs",
    "encode_base64_floats", "error_from_body", "is_error_event", "iter_stream",
    "iter_stream_events", "messages_text", "parse_chat_completion", "parse_chunk",
    "parse_completion", "parse_embeddings", "parse_model", "parse_model_list", "parse_usage",
    "plain_error", "redact", "safe_events",
]
