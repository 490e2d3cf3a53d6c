"""Client side of Ollama's native API (``/api/*``).

The base URL is the server root (``http://localhost:11434``); the original system put
``/api`` in the base, so a trailing ``/api`` is stripped for compatibility.  Streams are
NDJSON: the object with ``"done": true`` is the terminator (and carries the token counts);
``/api/pull`` streams progress objects ending in ``{"status": "success"}``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Iterator, Mapping, Sequence

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import (
    ConnectionFailed,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    ProviderError,
    TransientError,
    error_for_status,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request, new_request_id
from ipfs_accelerate_py.results import (
    IncompleteStream,
    Result,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from ipfs_accelerate_py.wire.counts import check_batch, check_count
from ipfs_accelerate_py.wire.ndjson import MalformedLine, iter_ndjson


if TYPE_CHECKING:  # pragma: no cover
    import requests

_NOT_FOUND = re.compile(r"not found|file does not exist", re.IGNORECASE)
_TOO_LONG = re.compile(r"exceeds the context length|exceeds (the )?maximum context", re.IGNORECASE)
#: Final-object fields that are neither text nor counts; kept in ``Result.data``.
_META = ("done_reason", "total_duration", "load_duration", "prompt_eval_duration",
         "eval_duration", "context", "thinking")
#: Coalescing limit for queued single-text embed requests (Ollama documents none).
DEFAULT_EMBED_BATCH_SIZE = 32


def _usage(obj: Mapping[str, Any]) -> Usage | None:
    if "prompt_eval_count" not in obj and "eval_count" not in obj:
        return None
    return Usage.of(obj.get("prompt_eval_count"), obj.get("eval_count"))


def _tool_args(value: Any) -> str:
    # Ollama sends arguments as an object; the core's ToolCall carries JSON text.
    return value if isinstance(value, str) else json.dumps(value if value is not None else {})


class OllamaBackend(Backend):
    """Ollama (local server, or ollama.com with a bearer key)."""

    name: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str | None] = "http://localhost:11434"
    operations: ClassVar[Mapping[str, str]] = {
        "chat": "chat completion (POST /api/chat); streams NDJSON",
        "generate": "completion for a prompt (POST /api/generate); streams NDJSON",
        "embed": "embeddings for a string or a list (POST /api/embed); single texts are coalesced",
        "tags": "locally available models (GET /api/tags)",
        "show": "model details, template, parameters, capabilities (POST /api/show)",
        "ps": "models loaded in memory (GET /api/ps)",
        "pull": "download a model (POST /api/pull); streamed: progress objects",
        "version": "server version (GET /api/version)",
    }
    streaming_operations: ClassVar[frozenset[str]] = frozenset({"chat", "generate", "pull"})
    key_required: ClassVar[bool] = False
    env_keys: ClassVar[tuple[str, ...]] = ("OLLAMA_API_KEY",)
    metadata_keys: ClassVar[tuple[str, ...]] = ("ollama_api_key",)
    env_base_url: ClassVar[tuple[str, ...]] = ("OLLAMA_API_URL", "OLLAMA_HOST")
    metadata_base_url: ClassVar[tuple[str, ...]] = ("ollama_api_url",)

    _POSTS: ClassVar[Mapping[str, str]] = {"chat": "/api/chat", "generate": "/api/generate",
                                           "embed": "/api/embed", "show": "/api/show",
                                           "pull": "/api/pull"}
    _GETS: ClassVar[Mapping[str, str]] = {"tags": "/api/tags", "ps": "/api/ps",
                                          "version": "/api/version"}
    _REQUIRED: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chat": ("model",), "generate": ("model",), "embed": ("model", "input"),
        "show": ("model",), "pull": ("model",)}

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)  # honours OLLAMA_API_URL / OLLAMA_HOST when none is configured
        self.base_url = self.normalize_base_url(self.base_url)

    @staticmethod
    def normalize_base_url(url: str) -> str:
        """Accept the original ``.../api`` base and a bare ``host:port`` (``OLLAMA_HOST``)."""
        url = url.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        if url.endswith("/api"):
            url = url[: -len("/api")]
        return url

    def check(self, request: Request) -> None:
        super().check(request)
        for field in self._REQUIRED.get(request.operation, ()):
            if request.payload.get(field) in (None, "", []):
                raise InvalidRequest(f"{self.name} {request.operation}: payload needs {field!r}",
                                     backend=self.name)

    # ------------------------------------------------------------------ building
    def _build(self, request: Request, key: ApiKey | None) -> HttpRequest:
        op = request.operation
        if op in self._GETS:
            return HttpRequest("GET", self.url(self._GETS[op]))
        body = dict(request.payload)
        headers = {"Content-Type": "application/json"}
        if op in self.streaming_operations:
            # Ollama streams unless told not to: say it explicitly either way.
            body["stream"] = bool(request.stream)
            if request.stream:
                headers["Accept"] = "application/x-ndjson"
        return HttpRequest("POST", self.url(self._POSTS[op]), json=body, headers=headers)

    build_chat = build_generate = build_embed = build_show = build_pull = _build
    build_tags = build_ps = build_version = _build

    # ------------------------------------------------------------------ parsing
    def _object(self, response: requests.Response) -> dict[str, Any]:
        body = self.decode_json(response)
        if not isinstance(body, dict):
            raise self.make_error(TransientError, "Ollama answered a non-object", response,
                                  code="malformed_response")
        if "error" in body:  # an error inside a 200 (e.g. a pull that failed)
            raise self._body_error(body, response)
        return body

    def _result(self, response: requests.Response, body: dict[str, Any], **fields: Any) -> Result:
        return Result(raw=body, backend=self.name, model=body.get("model"),
                      request_id=self.provider_request_id(response), **fields)

    def parse_chat(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        msg = body.get("message")
        if not isinstance(msg, dict) or body.get("done") is not True:
            raise self.make_error(TransientError, "Ollama /api/chat answered without a final "
                                  "message", response, code="malformed_response")
        calls = tuple(ToolCall(id=tc.get("id"), name=str((tc.get("function") or {}).get("name") or ""),
                               arguments=_tool_args((tc.get("function") or {}).get("arguments")))
                      for tc in msg.get("tool_calls") or ())
        meta = {k: body[k] for k in _META if k in body}
        if msg.get("thinking"):
            meta["thinking"] = msg["thinking"]
        return self._result(response, body, text=msg.get("content") or "", tool_calls=calls,
                            finish_reason=body.get("done_reason"), usage=_usage(body), data=meta)

    def parse_generate(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        if not isinstance(body.get("response"), str) or body.get("done") is not True:
            raise self.make_error(TransientError, "Ollama /api/generate answered without a "
                                  "final response", response, code="malformed_response")
        return self._result(response, body, text=body["response"],
                            finish_reason=body.get("done_reason"), usage=_usage(body),
                            data={k: body[k] for k in _META if k in body})

    def parse_embed(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        vectors = body.get("embeddings")
        if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
            raise self.make_error(TransientError, "Ollama /api/embed answered without "
                                  "embeddings", response, code="malformed_response")
        value = request.payload.get("input")
        if isinstance(value, (str, list)):
            check_count(f"{self.name} embed", 1 if isinstance(value, str) else len(value),
                        vectors, self.error_factory(response))
        return self._result(response, body, data=vectors,
                            usage=Usage.of(body.get("prompt_eval_count"), 0))

    def _models(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        models = body.get("models")
        if not isinstance(models, list):
            raise self.make_error(TransientError, "Ollama answered without a models list",
                                  response, code="malformed_response")
        return Result(data=models, raw=body, backend=self.name,
                      request_id=self.provider_request_id(response))

    parse_tags = parse_ps = _models

    def parse_show(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        return Result(data=body, raw=body, model=str(request.payload.get("model")),
                      backend=self.name, request_id=self.provider_request_id(response))

    def parse_version(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        return Result(text=str(body.get("version", "")), data=body, raw=body, backend=self.name,
                      request_id=self.provider_request_id(response))

    def parse_pull(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        if body.get("status") != "success":
            raise self.make_error(TransientError, f"pull ended with status {body.get('status')!r}",
                                  response, code="malformed_response")
        return Result(data=body, raw=body, finish_reason="success", backend=self.name,
                      model=str(request.payload.get("model")),
                      request_id=self.provider_request_id(response))

    # ------------------------------------------------------------------ streams
    def _lines(self, response: requests.Response) -> Iterator[dict[str, Any]]:
        """Decoded NDJSON objects; a cut connection, a malformed line or an error object
        raises a classified error."""
        import requests as _requests
        from urllib3.exceptions import HTTPError as Urllib3Error

        it = iter_ndjson(response)
        while True:
            try:
                obj = next(it)
            except StopIteration:
                return
            except MalformedLine as exc:
                raise self.make_error(TransientError, str(exc), response,
                                      code="malformed_response") from None
            except (_requests.RequestException, Urllib3Error, OSError) as exc:
                raise self.make_error(ConnectionFailed, f"stream connection broken: "
                                      f"{type(exc).__name__}", response, code="stream_cut") from None
            if not isinstance(obj, dict):
                raise self.make_error(TransientError, "NDJSON line is not an object", response,
                                      code="malformed_response")
            if "error" in obj:
                raise self._body_error(obj, response)
            yield obj

    def _text_stream(self, response: requests.Response, text_of: Any) -> Iterator[StreamChunk]:
        calls = 0
        for obj in self._lines(response):
            text, tool_calls = text_of(obj)
            deltas = []
            for tc in tool_calls:
                fn = tc.get("function") or {}
                deltas.append(ToolCallDelta(index=calls, id=tc.get("id"), name=fn.get("name"),
                                            arguments=_tool_args(fn.get("arguments"))))
                calls += 1
            if obj.get("done") is True:
                yield StreamChunk(text=text, tool_calls=tuple(deltas),
                                  finish_reason=obj.get("done_reason") or "stop",
                                  usage=_usage(obj), model=obj.get("model"), raw=obj)
                return
            yield StreamChunk(text=text, tool_calls=tuple(deltas), model=obj.get("model"), raw=obj)
        raise IncompleteStream("Ollama stream ended without its \"done\": true object")

    def stream_chat(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        def text_of(obj: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
            msg = obj.get("message") or {}
            return str(msg.get("content") or ""), list(msg.get("tool_calls") or ())
        return self._text_stream(response, text_of)

    def stream_generate(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        return self._text_stream(response, lambda obj: (str(obj.get("response") or ""), []))

    def stream_pull(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        """Progress objects as chunks (``raw`` = the object); ``success`` ends the stream."""
        for obj in self._lines(response):
            if obj.get("status") == "success":
                yield StreamChunk(finish_reason="success", raw=obj)
                return
            yield StreamChunk(raw=obj)
        raise IncompleteStream("Ollama pull ended without {\"status\": \"success\"}")

    # ------------------------------------------------------------------ batching
    @staticmethod
    def _single_input(request: Request) -> str | None:
        value = request.payload.get("input")
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value if isinstance(value, str) else None

    def batch_key(self, request: Request) -> Hashable | None:
        """Single-text ``embed`` requests with equal other fields (model, options,
        truncate, dimensions, keep_alive) and key pin share a key: /api/embed takes lists."""
        if request.operation != "embed" or request.stream or self._single_input(request) is None:
            return None
        rest = {k: v for k, v in request.payload.items() if k != "input"}
        return ("embed", request.key, json.dumps(rest, sort_keys=True, default=str))

    def max_batch_size(self, request: Request) -> int:
        return int(self.option("embed_batch_size", DEFAULT_EMBED_BATCH_SIZE))

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0]
        payload = {**first.payload, "input": [self._single_input(r) for r in requests]}
        return first.evolve(payload=payload, request_id=new_request_id(),
                            priority=min(r.priority for r in requests),
                            tags={"batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        vectors = result.data
        check_batch(f"{self.name} embed", requests, vectors, self.error_factory(None))
        return [Result(data=[vec], raw={"model": result.model, "embeddings": [vec]},
                       model=result.model, backend=self.name, request_id=req.request_id)
                for req, vec in zip(requests, vectors)]

    # ------------------------------------------------------------------ errors
    def _body_error(self, body: Mapping[str, Any], response: requests.Response | None) -> ProviderError:
        """An ``{"error": ...}`` carried in a 200 answer or a stream line."""
        message = str(body.get("error"))
        if _NOT_FOUND.search(message):
            cls: type[ProviderError] = NotFound
        elif _TOO_LONG.search(message):
            cls = ContextTooLong
        else:
            cls = TransientError
        return self.make_error(cls, message, response)

    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        message, _ = self.error_message(response)
        status = response.status_code
        if status == 400 and _TOO_LONG.search(message):
            cls: type[ProviderError] = ContextTooLong
        elif "file does not exist" in message:
            cls = NotFound  # a pull of a name the registry lacks: retrying cannot help
        elif status in (500, 502, 503, 504):
            cls = TransientError
        else:
            cls = error_for_status(status)
        return self.make_error(cls, message, response)
