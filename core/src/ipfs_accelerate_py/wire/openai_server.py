"""The OpenAI-compatible wire shapes, server side: what protocol fakes render.

Deterministic reply text and vectors, ``chat.completion`` / ``text_completion`` /
``embedding`` / ``model`` bodies, SSE chunk streams, error bodies and rate-limit headers,
and :class:`CompatResponder`, which answers a whole OpenAI-compatible API.  Only protocol
fakes (tests, simulator, benchmarks) import it; backends parse with
:mod:`ipfs_accelerate_py.wire.openai_compat`.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from .openai_compat import count_tokens, encode_base64_floats, messages_text
from .ratelimit import RateLimitInfo, format_duration
from .sse import format_sse

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
        #: text, dims, seed -> vector: what embeddings answer (the simulator's
        #: deterministic semantic embedding may replace it; docs/caching.md).
        self.vectorizer: Callable[[str, int, int], list[float]] = synth_vector

    # -- helpers ---------------------------------------------------------------------
    def error(self, status: int, message: str, code: str | None = None,
              param: str | None = None, type: str | None = None) -> Any:
        from ..server import ServerResponse

        return ServerResponse.json(render_error(message, type or error_type_for_status(status),
                                                code, param), status)

    def _body(self, req: Any) -> tuple[Any, Any]:  # (the JSON object, None) or (None, an error)
        try:
            body = req.json()
        except ValueError:
            return None, self.error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, Mapping):
            return None, self.error(400, "The request body must be a JSON object.")
        return body, None

    def _model(self, body: Mapping[str, Any]) -> tuple[Any, Any]:  # (model, None) or (None, an error)
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
        vectors = [self.vectorizer(t, int(dims), self.seed) for t in texts]
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
    "CompatResponder", "STATUS_TYPES", "_WORDS", "_logprobs", "error_type_for_status",
    "ratelimit_headers", "render_chat_chunks", "render_chat_completion", "render_completion",
    "render_completion_chunks", "render_embeddings", "render_error", "render_model",
    "render_model_list", "render_tool_call", "retry_after_headers", "sse_body", "synth_text",
    "synth_vector", "usage_dict",
]
