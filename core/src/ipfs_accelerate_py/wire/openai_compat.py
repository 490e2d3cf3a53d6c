"""The OpenAI-compatible wire shapes, from both sides.

Many services speak the same JSON: ``chat.completion`` bodies and ``chat.completion.chunk``
SSE streams ending in ``data: [DONE]``, legacy ``text_completion``, ``embedding`` lists,
``model`` lists and ``{"error": {"message", "type", "code", "param"}}`` error bodies.  This
module parses them into the core's :class:`~ipfs_accelerate_py.results.Result` and
:class:`~ipfs_accelerate_py.results.StreamChunk` (client side) and renders them (server
side), so every backend that speaks the dialect stays glue.  It names no provider.

Parsers that can fail take ``make_error(cls, message, code) -> ProviderError`` so a backend
can attach its response (status, request id, retry hints) to the error it raises.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
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
from .ratelimit import RateLimitInfo, format_duration
from .sse import SSEEvent, format_sse, iter_sse

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
    """``{"prompt_tokens", "completion_tokens", "total_tokens"}`` -> Usage (None if absent)."""
    if not isinstance(obj, Mapping):
        return None
    return Usage.of(obj.get("prompt_tokens"), obj.get("completion_tokens"), obj.get("total_tokens"))


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


# ============================================================================ server side
def count_tokens(text: str) -> int:
    """A deterministic stand-in tokenizer for servers: about one token per 4 characters."""
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


_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
          "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
          "zulu").split()


def synth_text(prompt: str, seed: int = 0, max_tokens: int | None = None, salt: str = "") -> str:
    """Deterministic reply text for a prompt: the same prompt and seed give the same words."""
    digest = hashlib.sha256(f"{seed}:{salt}:{prompt}".encode("utf-8")).digest()
    n = 4 + digest[0] % 8
    if max_tokens is not None:
        n = max(1, min(n, max_tokens))
    return " ".join(_WORDS[b % len(_WORDS)] for b in digest[1:1 + n])


def synth_vector(text: str, dims: int, seed: int = 0) -> list[float]:
    """A deterministic unit vector for a text."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        block = hashlib.sha256(f"{seed}:{counter}:{text}".encode("utf-8")).digest()
        out.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    vec = out[:dims]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    # Round-trip through float32 so float and base64 answers carry the same numbers.
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vec]


def usage_dict(prompt_tokens: int, completion_tokens: int | None = None) -> dict[str, int]:
    if completion_tokens is None:
        return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def render_tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def render_chat_completion(model: str, texts: str | Sequence[str], *, completion_id: str,
                           created: int | None = None, usage: Mapping[str, int] | None = None,
                           tool_calls: Sequence[Mapping[str, Any]] | None = None,
                           finish_reason: str | None = None, logprobs: bool = False,
                           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``chat.completion`` body; one choice per text (``n``)."""
    if isinstance(texts, str):
        texts = [texts]
    choices = []
    for i, text in enumerate(texts):
        message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else text,
                                   "refusal": None}
        if tool_calls:
            message["tool_calls"] = [dict(tc) for tc in tool_calls]
        choices.append({"index": i, "message": message,
                        "logprobs": _logprobs(text) if logprobs else None,
                        "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")})
    body = {"id": completion_id, "object": "chat.completion",
            "created": int(time.time()) if created is None else created, "model": model,
            "choices": choices}
    if usage is not None:
        body["usage"] = dict(usage)
    body.update(extra or {})
    return body


def _logprobs(text: str) -> dict[str, Any]:
    return {"content": [{"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top_logprobs": []}
                        for w in text.split(" ")], "refusal": None}


def render_chat_chunks(model: str, pieces: Sequence[str], *, completion_id: str,
                       created: int | None = None, usage: Mapping[str, int] | None = None,
                       tool_calls: Sequence[Mapping[str, Any]] | None = None,
                       finish_reason: str | None = None,
                       extra: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a stream (without ``[DONE]``).

    A role-only first delta, one delta per piece (tool calls: a header delta then argument
    pieces), a delta carrying the finish reason, and, when ``usage`` is given, the final
    ``choices: []`` chunk that ``stream_options.include_usage`` asks for.
    """
    created = int(time.time()) if created is None else created
    head = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": model, **(extra or {})}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    if tool_calls:
        for i, tc in enumerate(tool_calls):
            fn = tc["function"]
            out.append(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                              "function": {"name": fn["name"], "arguments": ""}}]}))
            args = fn["arguments"]
            for j in range(0, len(args), 8):
                out.append(chunk({"tool_calls": [{"index": i,
                                                  "function": {"arguments": args[j:j + 8]}}]}))
    else:
        out.extend(chunk({"content": p}) for p in pieces)
    out.append(chunk({}, finish_reason or ("tool_calls" if tool_calls else "stop")))
    if usage is not None:
        out.append({**head, "choices": [], "usage": dict(usage)})
    return out


def render_completion(model: str, texts: str | Sequence[str], *, completion_id: str,
                      created: int | None = None,
                      usage: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A legacy ``text_completion`` body."""
    if isinstance(texts, str):
        texts = [texts]
    body: dict[str, Any] = {
        "id": completion_id, "object": "text_completion",
        "created": int(time.time()) if created is None else created, "model": model,
        "choices": [{"text": t, "index": i, "logprobs": None, "finish_reason": "stop"}
                    for i, t in enumerate(texts)]}
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def render_completion_chunks(model: str, pieces: Sequence[str], *, completion_id: str,
                             created: int | None = None,
                             usage: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    created = int(time.time()) if created is None else created
    head = {"id": completion_id, "object": "text_completion", "created": created, "model": model}
    out = [{**head, "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}]}
           for p in pieces]
    out.append({**head, "choices": [{"text": "", "index": 0, "logprobs": None,
                                     "finish_reason": "stop"}]})
    if usage is not None:
        out.append({**head, "choices": [], "usage": dict(usage)})
    return out


def sse_body(objects: Iterable[Any], done: bool = True) -> list[bytes]:
    """SSE frames for the objects, then ``data: [DONE]`` (unless ``done`` is False)."""
    frames = [format_sse(o) for o in objects]
    if done:
        frames.append(format_sse("[DONE]"))
    return frames


def render_embeddings(model: str, vectors: Sequence[Sequence[float]], *,
                      usage: Mapping[str, int] | None = None,
                      encoding_format: str = "float") -> dict[str, Any]:
    data = [{"object": "embedding", "index": i,
             "embedding": encode_base64_floats(v) if encoding_format == "base64" else list(v)}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": dict(usage) if usage is not None else usage_dict(0)}


def render_model(model_id: str, *, created: int = 1700000000, owned_by: str = "system",
                 **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by, **extra}


def render_model_list(models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": [dict(m) for m in models]}


def render_error(message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    """An ``{"error": {...}}`` body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


#: The error ``type`` an HTTP status is reported with.
STATUS_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                403: "invalid_request_error", 404: "invalid_request_error",
                409: "invalid_request_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "requests"}


def error_type_for_status(status: int) -> str:
    return STATUS_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def ratelimit_headers(info: RateLimitInfo) -> dict[str, str]:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for what ``info`` knows."""
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        limit = getattr(info, f"limit_{kind}")
        remaining = getattr(info, f"remaining_{kind}")
        reset = getattr(info, f"reset_{kind}")
        if limit is not None:
            out[f"x-ratelimit-limit-{kind}"] = str(int(limit))
        if remaining is not None:
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(remaining)))
        if reset is not None:
            out[f"x-ratelimit-reset-{kind}"] = format_duration(max(0.0, reset))
    return out


def retry_after_headers(seconds: float | None, with_ms: bool = True) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up) and optionally ``retry-after-ms``."""
    if seconds is None:
        return {}
    out = {"retry-after": str(max(1, math.ceil(seconds)))}
    if with_ms:
        out["retry-after-ms"] = str(int(round(seconds * 1000)))
    return out


# ============================================================================ a generic responder
class CompatResponder:
    """Answers OpenAI-compatible requests deterministically, for protocol servers.

    A server owns one and routes its paths to :meth:`chat`, :meth:`completions`,
    :meth:`embeddings`, :meth:`models` and :meth:`model`.  ``models`` is the fixture list
    the server offers (an unknown model is a 404 ``model_not_found``); a prompt longer than
    ``context_window`` tokens is a 400 ``context_length_exceeded``.  ``tool_choice``
    "required" or a named function produces a tool call; otherwise the reply is text.
    """

    def __init__(self, models: Sequence[str] = ("test-model",), *, seed: int = 0,
                 owned_by: str = "system", context_window: int = 8192, embedding_dims: int = 16,
                 id_prefix: str = "chatcmpl-", check_models: bool = True,
                 model_fields: Mapping[str, Any] | None = None) -> None:
        self.model_ids = list(models)
        self.model_fields = dict(model_fields or {})
        self.seed = seed
        self.owned_by = owned_by
        self.context_window = context_window
        self.embedding_dims = embedding_dims
        self.id_prefix = id_prefix
        self.check_models = check_models
        self.created = 1700000000

    # -- helpers ---------------------------------------------------------------------
    def error(self, status: int, message: str, code: str | None = None,
              param: str | None = None, type: str | None = None) -> Any:
        from ..server import ServerResponse

        return ServerResponse.json(render_error(message, type or error_type_for_status(status),
                                                code, param), status)

    def _body(self, req: Any) -> tuple[Mapping[str, Any] | None, Any]:
        try:
            body = req.json()
        except ValueError:
            return None, self.error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, Mapping):
            return None, self.error(400, "The request body must be a JSON object.")
        return body, None

    def _model(self, body: Mapping[str, Any]) -> tuple[str | None, Any]:
        model = body.get("model")
        if not model:
            return None, self.error(400, "you must provide a model parameter", param="model")
        if self.check_models and self.model_ids and model not in self.model_ids:
            return None, self.error(404, f"The model `{model}` does not exist or you do not have "
                                    "access to it.", code="model_not_found")
        return str(model), None

    def _id(self, salt: str) -> str:
        return self.id_prefix + hashlib.sha256(f"{self.seed}:{salt}".encode()).hexdigest()[:24]

    @staticmethod
    def _max_tokens(body: Mapping[str, Any]) -> int | None:
        for k in ("max_completion_tokens", "max_tokens"):
            if isinstance(body.get(k), int):
                return int(body[k])
        return None

    def _too_long(self, prompt_tokens: int, want: int | None) -> Any:
        if prompt_tokens + (want or 0) > self.context_window:
            return self.error(400, f"This model's maximum context length is {self.context_window} "
                              f"tokens. However, you requested {prompt_tokens + (want or 0)} "
                              "tokens. Please reduce the length of the messages.",
                              code="context_length_exceeded", param="messages")
        return None

    def _stream(self, objects: list[dict[str, Any]]) -> Any:
        from ..server import ServerResponse

        return ServerResponse.stream(sse_body(objects),
                                     headers={"Cache-Control": "no-cache"})

    # -- handlers --------------------------------------------------------------------
    def chat(self, req: Any, extra: Mapping[str, Any] | None = None) -> Any:
        from ..server import ServerResponse

        body, err = self._body(req)
        if err is not None:
            return err
        model, err = self._model(body)
        if err is not None:
            return err
        messages = body.get("messages")
        if not messages:
            return self.error(400, "'messages' is a required property", param="messages")
        err = self.check_chat(body)
        if err is not None:
            return err
        prompt = messages_text(messages)
        ptoks = count_tokens(prompt)
        want = self._max_tokens(body)
        err = self._too_long(ptoks, want)
        if err is not None:
            return err
        n = int(body.get("n") or 1)
        salt = str(body.get("seed", ""))
        texts = [synth_text(prompt, self.seed, want, salt + (f"/{i}" if i else "")) for i in range(n)]
        fmt = body.get("response_format")
        if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
            texts = [json.dumps({"answer": t}) for t in texts]  # JSON mode answers JSON
        calls = self._tool_calls(body, prompt)
        ctoks = sum(count_tokens(t) for t in texts) if not calls else count_tokens(
            "".join(c["function"]["arguments"] for c in calls))
        usage = usage_dict(ptoks, ctoks)
        cid = self._id(prompt + salt)
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            words = texts[0].split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            objects = render_chat_chunks(
                model, pieces, completion_id=cid, created=self.created,
                usage=usage if opts.get("include_usage") else None, tool_calls=calls,
                extra=extra)
            return self._stream(self.finish_stream(objects, body, usage))
        return ServerResponse.json(render_chat_completion(
            model, texts, completion_id=cid, created=self.created, usage=usage, tool_calls=calls,
            logprobs=bool(body.get("logprobs")), extra=extra))

    # -- hooks a dialect overrides ----------------------------------------------------
    def check_chat(self, body: Mapping[str, Any]) -> Any:
        """Reject what this dialect does not support (an error response), or None."""
        return None

    def finish_stream(self, objects: list[dict[str, Any]], body: Mapping[str, Any],
                      usage: Mapping[str, int]) -> list[dict[str, Any]]:
        """Adjust the chunk objects of a chat stream (a dialect's extra fields)."""
        return objects

    def _tool_calls(self, body: Mapping[str, Any], prompt: str) -> list[dict[str, Any]] | None:
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if not tools or choice in (None, "none", "auto"):
            return None
        if isinstance(choice, Mapping):
            name = str((choice.get("function") or {}).get("name") or "")
        else:
            name = str(((tools[0] or {}).get("function") or {}).get("name") or "")
        args = json.dumps({"query": synth_text(prompt, self.seed, 3)})
        call_id = "call_" + hashlib.sha256(f"{self.seed}:call:{prompt}".encode()).hexdigest()[:24]
        return [render_tool_call(call_id, name, args)]

    def completions(self, req: Any) -> Any:
        from ..server import ServerResponse

        body, err = self._body(req)
        if err is not None:
            return err
        model, err = self._model(body)
        if err is not None:
            return err
        prompt = body.get("prompt")
        if prompt is None:
            return self.error(400, "'prompt' is a required property", param="prompt")
        prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        ptoks = count_tokens(prompt_text)
        want = self._max_tokens(body)
        err = self._too_long(ptoks, want)
        if err is not None:
            return err
        text = synth_text(prompt_text, self.seed, want if want is not None else 16)
        usage = usage_dict(ptoks, count_tokens(text))
        cid = "cmpl-" + self._id(prompt_text)[len(self.id_prefix):]
        if body.get("stream"):
            words = text.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            opts = body.get("stream_options") or {}
            return self._stream(render_completion_chunks(
                model, pieces, completion_id=cid, created=self.created,
                usage=usage if opts.get("include_usage") else None))
        return ServerResponse.json(render_completion(model, text, completion_id=cid,
                                                     created=self.created, usage=usage))

    def embeddings(self, req: Any) -> Any:
        from ..server import ServerResponse

        body, err = self._body(req)
        if err is not None:
            return err
        model, err = self._model(body)
        if err is not None:
            return err
        value = body.get("input")
        if value is None or value == "" or value == []:
            return self.error(400, "'input' is a required property", param="input")
        if isinstance(value, str) or (isinstance(value, list) and value
                                      and all(isinstance(x, int) for x in value)):
            inputs = [value]
        elif isinstance(value, list):
            inputs = value
        else:
            return self.error(400, "'input' must be a string or an array", param="input")
        if len(inputs) > 2048:
            return self.error(400, "'input' must have at most 2048 items", param="input")
        dims = body.get("dimensions") or self.embedding_dims
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            return self.error(400, f"'{fmt}' is not one of ['float', 'base64']",
                              param="encoding_format")
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
        vectors = [synth_vector(t, int(dims), self.seed) for t in texts]
        usage = usage_dict(sum(count_tokens(t) for t in texts))
        return ServerResponse.json(render_embeddings(model, vectors, usage=usage,
                                                     encoding_format=fmt))

    def model_objects(self) -> list[dict[str, Any]]:
        return [render_model(m, created=self.created, owned_by=self.owned_by, **self.model_fields)
                for m in self.model_ids]

    def models(self, req: Any = None) -> Any:
        from ..server import ServerResponse

        return ServerResponse.json(render_model_list(self.model_objects()))

    def model(self, req: Any, model: str) -> Any:
        from ..server import ServerResponse

        for m in self.model_objects():
            if m["id"] == model:
                return ServerResponse.json(m)
        return self.error(404, f"The model '{model}' does not exist", code="model_not_found",
                          param="model")


__all__ = [
    "CODE_CLASSES", "TYPE_CLASSES", "CompatResponder", "ErrorFactory", "ErrorInfo", "classify_error_body",
    "classify_response", "count_tokens", "decode_base64_floats", "embedding_inputs",
    "encode_base64_floats", "error_from_body", "error_type_for_status", "is_error_event",
    "iter_stream", "iter_stream_events", "messages_text", "parse_chat_completion",
    "parse_chunk", "parse_completion", "parse_embeddings", "parse_model", "parse_model_list", "parse_usage",
    "plain_error", "ratelimit_headers", "redact", "render_chat_chunks", "render_chat_completion",
    "render_completion", "render_completion_chunks", "render_embeddings", "render_error",
    "render_model", "render_model_list", "render_tool_call", "retry_after_headers", "safe_events",
    "sse_body", "synth_text", "synth_vector", "usage_dict",
]
