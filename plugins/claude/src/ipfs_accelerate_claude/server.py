"""The server side of the Anthropic Messages API: answers like api.anthropic.com.

Routes: ``POST /v1/messages`` (JSON or an SSE stream with ``event:`` lines),
``POST /v1/messages/count_tokens``, ``GET /v1/models``, ``GET /v1/models/{model_id}``.
Errors use Anthropic's ``{"type": "error", "error": {"type", "message"}, "request_id"}``
body; 429s carry ``anthropic-ratelimit-*`` and ``retry-after``; :meth:`overloaded` is the
529.  Every answer has a ``request-id`` header.  Content is deterministic under the seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo
from ipfs_accelerate_py.wire.sse import format_sse

ERROR_TYPE_BY_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    504: "timeout_error", 529: "overloaded_error",
}

DEFAULT_MODELS = ("claude-sim-haiku", "claude-sim-sonnet")

_WORDS = ("the quick answer is that every request arrives in order and nothing is lost while "
          "the queue waits for capacity under a shared quota of tokens per minute").split()


def _tokens(obj: Any) -> int:
    """A rough, deterministic token count (about four characters per token)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return max(1, (len(text) + 3) // 4)


def _last_user_text(messages: Sequence[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(str(b.get("text", "")) for b in c if isinstance(b, dict))
    return ""


def _rfc3339(seconds_from_now: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=max(0.0, seconds_from_now))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class ClaudeServer(ProtocolServer):
    """A local Anthropic API.  ``models`` are the ids it lists (any model id is accepted by
    ``/v1/messages``); ``context_window`` is the prompt size above which it answers
    "prompt is too long"."""

    name = "claude"

    def __init__(self, seed: int = 0, models: Iterable[str] = DEFAULT_MODELS,
                 context_window: int = 200_000) -> None:
        super().__init__(seed)
        self.seed = seed
        self.models = list(models)
        self.context_window = context_window
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def _id(self, prefix: str) -> str:
        with self._lock:
            n = next(self._ids)
        return prefix + hashlib.sha256(f"{self.seed}:{prefix}:{n}".encode()).hexdigest()[:24]

    def _json(self, obj: Any, status: int = 200) -> ServerResponse:
        return ServerResponse.json(obj, status, headers={"request-id": self._id("req_")})

    def key_of(self, req: ServerRequest) -> str | None:
        return req.header("x-api-key")

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        request_id = self._id("req_")
        body = {"type": "error",
                "error": {"type": ERROR_TYPE_BY_STATUS.get(status, "api_error" if status >= 500
                                                           else "invalid_request_error"),
                          "message": message},
                "request_id": request_id}
        return ServerResponse.json(body, status, headers={"request-id": request_id})

    def overloaded(self, req: ServerRequest) -> ServerResponse:
        """Anthropic's 529: the service (not this key) is over capacity."""
        return self.error(req, 529, "Overloaded")

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        headers: dict[str, str] = {}
        for kind, limit, remaining, reset in (
                ("requests", info.limit_requests, info.remaining_requests, info.reset_requests),
                ("tokens", info.limit_tokens, info.remaining_tokens, info.reset_tokens)):
            if limit is not None:
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(int(limit))
            if remaining is not None:
                headers[f"anthropic-ratelimit-{kind}-remaining"] = str(max(0, int(remaining)))
            if reset is not None:
                headers[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(reset)
        return headers

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        resp = self.error(req, 429, "This request would exceed your organization's rate limit. "
                                    "Please reduce the prompt length or the maximum tokens requested, "
                                    "or try again later.")
        resp.headers.update(self.rate_limit_headers(info))
        if info.retry_after is not None:
            resp.headers["retry-after"] = str(max(1, int(info.retry_after + 0.999)))
        return resp

    def _check(self, req: ServerRequest) -> ServerResponse | None:
        if not req.header("x-api-key"):
            return self.error(req, 401, "x-api-key header is required")
        if not req.header("anthropic-version"):
            return self.error(req, 400, "anthropic-version: header is required")
        return None

    def _body(self, req: ServerRequest) -> tuple[dict[str, Any] | None, ServerResponse | None]:
        try:
            body = req.json()
        except ValueError:
            return None, self.error(req, 400, "There was an error parsing the body of your request.")
        if not isinstance(body, dict):
            return None, self.error(req, 400, "The request body is not a valid JSON object.")
        return body, None

    def _validate(self, req: ServerRequest, body: dict[str, Any], *, needs_max_tokens: bool
                  ) -> ServerResponse | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self.error(req, 400, "model: Field required")
        if needs_max_tokens and not isinstance(body.get("max_tokens"), int):
            return self.error(req, 400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error(req, 400, "messages: Field required" if messages is None
                              else "messages: at least one message is required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return self.error(req, 400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        prompt = _tokens({k: body.get(k) for k in ("system", "messages", "tools")})
        if prompt > self.context_window:
            return self.error(req, 400, f"prompt is too long: {prompt} tokens > "
                                        f"{self.context_window} maximum")
        return None

    # ------------------------------------------------------------------ content
    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        """The Message a request gets: text, or a tool_use block when tools are offered."""
        messages = body["messages"]
        prompt_tokens = _tokens({k: body.get(k) for k in ("system", "messages", "tools")})
        tool = self._pick_tool(body)
        if tool is not None:
            content = [{"type": "tool_use", "id": self._id("toolu_"), "name": tool["name"],
                        "input": _sample_input(tool.get("input_schema") or {})}]
            stop_reason, stop_sequence, out = "tool_use", None, _tokens(content[0]["input"])
        else:
            prompt = _last_user_text(messages)
            rng = random.Random(hashlib.sha256(f"{self.seed}:{prompt}".encode()).digest())
            words = [rng.choice(_WORDS) for _ in range(8 + rng.randrange(16))]
            stop_reason, stop_sequence = "end_turn", None
            if len(words) > body["max_tokens"]:
                words, stop_reason = words[:body["max_tokens"]], "max_tokens"
            text = " ".join(words)
            for seq in body.get("stop_sequences") or []:
                if seq and seq in text:
                    text, stop_reason, stop_sequence = text[:text.index(seq)], "stop_sequence", seq
                    break
            content = [{"type": "text", "text": text}]
            out = max(1, len(text.split()))
        return {"id": self._id("msg_"), "type": "message", "role": "assistant",
                "model": body["model"], "content": content, "stop_reason": stop_reason,
                "stop_sequence": stop_sequence,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": out,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}

    @staticmethod
    def _pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
        choice = body.get("tool_choice") or {"type": "auto"}
        if not tools or choice.get("type") == "none":
            return None
        last = body["messages"][-1].get("content")
        if isinstance(last, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                          for b in last):
            return None  # the tool already answered: reply with text
        if choice.get("type") == "tool":
            return next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        return tools[0]

    def stream_events(self, message: dict[str, Any]) -> list[bytes]:
        """The SSE events, in Anthropic's order, that stream ``message`` (one bytes per event,
        so tests can cut or splice them)."""
        start = dict(message, content=[], stop_reason=None, stop_sequence=None,
                     usage=dict(message["usage"], output_tokens=1))
        events = [format_sse({"type": "message_start", "message": start}, "message_start")]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(format_sse({"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}},
                                         "content_block_start"))
                if index == 0:
                    events.append(format_sse({"type": "ping"}, "ping"))
                words = block["text"].split(" ")
                for i in range(0, len(words), 3):
                    piece = " ".join(words[i:i + 3]) + (" " if i + 3 < len(words) else "")
                    events.append(format_sse({"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": piece}},
                                             "content_block_delta"))
            else:
                events.append(format_sse({"type": "content_block_start", "index": index,
                                          "content_block": dict(block, input={})},
                                         "content_block_start"))
                if index == 0:
                    events.append(format_sse({"type": "ping"}, "ping"))
                arguments = json.dumps(block["input"])
                for i in range(0, len(arguments), 12):
                    events.append(format_sse({"type": "content_block_delta", "index": index,
                                              "delta": {"type": "input_json_delta",
                                                        "partial_json": arguments[i:i + 12]}},
                                             "content_block_delta"))
            events.append(format_sse({"type": "content_block_stop", "index": index},
                                     "content_block_stop"))
        events.append(format_sse({"type": "message_delta",
                                  "delta": {"stop_reason": message["stop_reason"],
                                            "stop_sequence": message["stop_sequence"]},
                                  "usage": {"output_tokens": message["usage"]["output_tokens"]}},
                                 "message_delta"))
        events.append(format_sse({"type": "message_stop"}, "message_stop"))
        return events

    @staticmethod
    def network_parts(events: list[bytes]) -> list[bytes]:
        """How the events go out on the wire: the preamble (message_start, the first
        content_block_start, ping) in one write, then one write per event."""
        head = next((i for i, e in enumerate(events) if e.startswith(b"event: content_block_delta")),
                    len(events))
        return [b"".join(events[:head])] + events[head:] if head else events

    @staticmethod
    def error_event(error_type: str = "overloaded_error", message: str = "Overloaded") -> bytes:
        return format_sse({"type": "error", "error": {"type": error_type, "message": message}},
                          "error")

    # ------------------------------------------------------------------ routes
    @route("POST", "/v1/messages")
    def messages(self, req: ServerRequest) -> ServerResponse:
        failure = self._check(req)
        body, bad = self._body(req)
        failure = failure or bad or self._validate(req, body or {}, needs_max_tokens=True)
        if failure is not None:
            return failure
        assert body is not None
        message = self.generate(body)
        if body.get("stream"):
            return ServerResponse.stream(self.network_parts(self.stream_events(message)),
                                         headers={"request-id": self._id("req_"),
                                                  "cache-control": "no-cache"})
        return self._json(message)

    @route("POST", "/v1/messages/count_tokens")
    def count_tokens(self, req: ServerRequest) -> ServerResponse:
        failure = self._check(req)
        body, bad = self._body(req)
        failure = failure or bad or self._validate(req, body or {}, needs_max_tokens=False)
        if failure is not None:
            return failure
        assert body is not None
        extra = sorted(set(body) - {"model", "messages", "system", "tools", "tool_choice",
                                    "thinking", "cache_control", "output_config", "mcp_servers",
                                    "context_management"})
        if extra:
            return self.error(req, 400, f"{extra[0]}: Extra inputs are not permitted")
        return self._json({"input_tokens": _tokens({k: body.get(k) for k in
                                                    ("system", "messages", "tools")})})

    def _model_info(self, model_id: str) -> dict[str, Any]:
        return {"type": "model", "id": model_id, "display_name": model_id.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z", "max_input_tokens": self.context_window,
                "max_tokens": 8192, "capabilities": None}

    @route("GET", "/v1/models")
    def list_models(self, req: ServerRequest) -> ServerResponse:
        failure = self._check(req)
        if failure is not None:
            return failure
        try:
            limit = int(req.arg("limit", "20") or 20)
        except ValueError:
            return self.error(req, 400, "limit: Input should be a valid integer")
        ids = list(self.models)
        after, before = req.arg("after_id"), req.arg("before_id")
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        elif before in ids:
            ids = ids[:ids.index(before)][-limit:]
        page = ids[:limit]
        return self._json({"data": [self._model_info(m) for m in page],
                           "first_id": page[0] if page else None,
                           "last_id": page[-1] if page else None,
                           "has_more": len(ids) > len(page)})

    @route("GET", "/v1/models/{model_id}")
    def get_model(self, req: ServerRequest, model_id: str) -> ServerResponse:
        failure = self._check(req)
        if failure is not None:
            return failure
        if model_id not in self.models:
            return self.error(req, 404, f"model: {model_id}")
        return self._json(self._model_info(model_id))


def _sample_input(schema: dict[str, Any]) -> dict[str, Any]:
    """A deterministic argument object matching a tool's JSON schema (top level only)."""
    samples = {"string": "example", "integer": 1, "number": 1.5, "boolean": True,
               "array": [], "object": {}}
    props = schema.get("properties") or {}
    return {name: (spec.get("enum") or [samples.get(spec.get("type"), "example")])[0]
            for name, spec in props.items() if isinstance(spec, dict)}
