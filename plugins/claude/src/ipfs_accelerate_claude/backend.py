"""The client side of the Anthropic Messages API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator, Mapping
from urllib.parse import quote

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import InvalidRequest, ProviderError, TransientError, error_for_status
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result, StreamChunk, ToolCall, Usage
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_anthropic_headers

from .errors import error_class, error_fields
from .usage import anthropic_usage
from .stream import iter_message_stream

if TYPE_CHECKING:  # pragma: no cover
    import requests

API_VERSION = "2023-06-01"

#: Fields the count_tokens endpoint accepts (it rejects unknown ones such as max_tokens).
COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking",
                       "cache_control", "output_config", "mcp_servers", "context_management")


class ClaudeBackend(Backend):
    """Anthropic Messages API: ``messages`` (alias ``chat``, streams), ``count_tokens``,
    ``models``, ``model``.

    Options (``BackendConfig.options``): ``anthropic_version`` (default ``2023-06-01``),
    ``anthropic_beta`` (a str or a list, sent as ``anthropic-beta``), ``max_tokens`` (used when a
    messages payload has none; default 1024, since the API requires the field).
    """

    name = "claude"
    default_base_url = "https://api.anthropic.com"
    operations = {
        "messages": "Messages API: system, tools (tool_use/tool_result), stop_sequences, metadata; streams",
        "chat": "alias of messages",
        "count_tokens": "count the input tokens of a messages payload",
        "models": "list models (one page: limit, after_id, before_id)",
        "model": "describe one model (payload {'model': id})",
    }
    streaming_operations = frozenset({"messages", "chat"})
    key_required = True
    env_keys = ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
    secret_headers = frozenset({"x-api-key"})
    metadata_keys = ("claude_api_key", "anthropic_api_key", "api_key")
    env_base_url = ("ANTHROPIC_BASE_URL",)
    metadata_base_url = ("anthropic_base_url", "claude_base_url")
    # Anthropic takes no client request id; its own comes back in ``request-id``.
    request_id_header = None
    response_id_header = "request-id"

    # ------------------------------------------------------------------ headers
    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        headers = {"anthropic-version": str(self.option("anthropic_version", API_VERSION))}
        beta = self.option("anthropic_beta")
        if beta:
            headers["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(beta)
        secret = key.reveal() if key is not None else None
        if secret:
            headers["x-api-key"] = secret
        return headers

    def _post(self, path: str, body: Mapping[str, Any], *, stream: bool = False) -> HttpRequest:
        headers = {"content-type": "application/json"}
        if stream:
            headers["accept"] = "text/event-stream"
        return HttpRequest("POST", self.url(path), headers=headers, json=dict(body), stream=stream)

    # ------------------------------------------------------------------ messages / chat
    def messages_body(self, request: Request) -> dict[str, Any]:
        """The request body: the payload passed through, OpenAI-style ``system`` messages
        hoisted into the top-level ``system`` field, ``stream`` set from the request."""
        payload = dict(request.payload)
        if not payload.get("model"):
            default = self.option("model")
            if not default:
                raise InvalidRequest("claude messages: payload needs a 'model'", backend=self.name)
            payload["model"] = default
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("claude messages: payload needs a non-empty 'messages' list",
                                 backend=self.name)
        system_parts = [m.get("content") for m in messages
                        if isinstance(m, dict) and m.get("role") == "system"]
        if system_parts:
            payload["messages"] = [m for m in messages
                                   if not (isinstance(m, dict) and m.get("role") == "system")]
            payload["system"] = _join_system(payload.get("system"), system_parts)
        payload.setdefault("max_tokens", int(self.option("max_tokens", 1024)))
        payload.pop("stream", None)
        if request.stream:
            payload["stream"] = True
        return payload

    def build_messages(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post("/v1/messages", self.messages_body(request), stream=request.stream)

    build_chat = build_messages

    def parse_messages(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise self.make_error(TransientError, "claude: success body without a content list",
                                  response, code="malformed_response")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in body["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
            elif block.get("type") == "tool_use":
                calls.append(ToolCall(id=block.get("id"), name=str(block.get("name") or ""),
                                      arguments=json.dumps(block.get("input") or {})))
        return Result(text="".join(texts), tool_calls=tuple(calls),
                      finish_reason=body.get("stop_reason"), usage=_usage(body.get("usage")),
                      model=body.get("model"),
                      request_id=self.provider_request_id(response) or body.get("id"),
                      raw=body, backend=self.name)

    parse_chat = parse_messages

    def stream_messages(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        return iter_message_stream(self, response)

    stream_chat = stream_messages

    # ------------------------------------------------------------------ count_tokens
    def build_count_tokens(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = self.messages_body(request.evolve(stream=False))
        return self._post("/v1/messages/count_tokens",
                          {k: v for k, v in body.items() if k in COUNT_TOKENS_FIELDS})

    def parse_count_tokens(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        count = body.get("input_tokens") if isinstance(body, dict) else None
        if not isinstance(count, int):
            raise self.make_error(TransientError, "claude count_tokens: no input_tokens in body",
                                  response, code="malformed_response")
        return Result(data=count, usage=Usage.of(count, 0), model=request.payload.get("model"),
                      request_id=self.provider_request_id(response), raw=body, backend=self.name)

    # ------------------------------------------------------------------ models
    def build_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        params = {k: request.payload[k] for k in ("limit", "after_id", "before_id")
                  if request.payload.get(k) is not None}
        return HttpRequest("GET", self.url("/v1/models"), params=params or None)

    def parse_models(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise self.make_error(TransientError, "claude models: body without a data list",
                                  response, code="malformed_response")
        return Result(data=data, request_id=self.provider_request_id(response), raw=body,
                      backend=self.name)

    def build_model(self, request: Request, key: ApiKey | None) -> HttpRequest:
        model = request.payload.get("model") or request.payload.get("model_id")
        if not model:
            raise InvalidRequest("claude model: payload needs a 'model'", backend=self.name)
        return HttpRequest("GET", self.url("/v1/models/" + quote(str(model), safe="")))

    def parse_model(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict) or "id" not in body:
            raise self.make_error(TransientError, "claude model: body without an id",
                                  response, code="malformed_response")
        return Result(data=body, model=body["id"], request_id=self.provider_request_id(response),
                      raw=body, backend=self.name)

    # ------------------------------------------------------------------ errors and limits
    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        etype, message, body_request_id = error_fields(body)
        if message is None:
            message, _ = self.error_message(response)
        cls = error_class(etype, message) or error_for_status(response.status_code)
        err = self.make_error(cls, message, response, code=etype)
        if err.request_id is None:
            err.request_id = body_request_id
        return err

    def stream_error(self, event: Any, response: requests.Response) -> ProviderError:
        """The classified error an ``error`` event of a stream carries (HTTP status was 200)."""
        etype, message, body_request_id = error_fields(event)
        message = message or "error event in stream"
        cls = error_class(etype, message) or TransientError
        return cls(message, code=etype, backend=self.name,
                   request_id=self.provider_request_id(response) or body_request_id)

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        info = parse_anthropic_headers(response.headers)
        return None if info.is_empty() else info


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    return anthropic_usage(usage.get("input_tokens"), usage.get("output_tokens"), usage)


def _join_system(existing: Any, parts: list[Any]) -> Any:
    """Merge OpenAI-style system messages into Anthropic's top-level ``system``."""
    if all(isinstance(p, str) for p in parts) and (existing is None or isinstance(existing, str)):
        return "\n\n".join([existing] * bool(existing) + parts)
    blocks: list[Any] = []
    for item in ([existing] if existing else []) + parts:
        if isinstance(item, str):
            blocks.append({"type": "text", "text": item})
        elif isinstance(item, list):
            blocks.extend(item)
    return blocks
