"""Client side of Hugging Face Text Generation Inference (TGI).

Native routes on the configured base URL (a self-hosted ``text-generation-launcher`` or a
hosted Inference Endpoint): ``/generate`` and ``/generate_stream`` (SSE token events; the
event carrying ``generated_text`` ends the stream), the OpenAI-compatible Messages API
``/v1/chat/completions`` (JSON or SSE ending in ``[DONE]``), ``/info``, ``/health`` and
``/tokenize``.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import (
    ContextTooLong,
    InvalidRequest,
    ProviderError,
    RateLimited,
    TransientError,
    error_for_status,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import IncompleteStream, Result, StreamChunk, Usage
from ipfs_accelerate_py.wire import openai_compat as oai
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers
from ipfs_accelerate_py.wire.sse import SSEEvent


if TYPE_CHECKING:  # pragma: no cover
    import requests

# "`inputs` must have less than 1024 tokens. Given: 2000" and "`inputs` tokens +
# `max_new_tokens` must be <= 2048. Given: ..." both mean: shorten it, do not retry.
_TOO_LONG = re.compile(r"`inputs` must have less than \d+ tokens|`inputs` tokens \+ "
                       r"`max_new_tokens` must be <=|input is too long|maximum context length",
                       re.IGNORECASE)
#: TGI ``error_type`` values and their class when the HTTP status does not decide
#: (errors carried inside a 200 stream).
_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "validation": InvalidRequest, "overloaded": RateLimited, "generation": TransientError,
    "incomplete_generation": TransientError, "healthcheck": TransientError,
}
#: A conservative characters-per-token figure for the early context check: real
#: tokenizers average about 4, so a prompt estimated too long here cannot fit.
DEFAULT_CHARS_PER_TOKEN = 8.0


class TGIBackend(Backend):
    """Hugging Face Text Generation Inference."""

    name: ClassVar[str] = "hf_tgi"
    # TGI's container listens on :80; the docs map it to localhost:8080.
    default_base_url: ClassVar[str | None] = "http://localhost:8080"
    operations: ClassVar[Mapping[str, str]] = {
        "generate": "text generation (POST /generate; streamed: POST /generate_stream)",
        "chat": "Messages API, OpenAI-compatible (POST /v1/chat/completions), streams",
        "completions": "OpenAI-compatible legacy completions (POST /v1/completions), streams",
        "models": "the served model, as an OpenAI model list (GET /v1/models)",
        "tokenize": "tokenize a prompt (POST /tokenize)",
        "info": "model and router limits (GET /info); remembers max_input/total_tokens",
        "health": "readiness (GET /health)",
    }
    streaming_operations: ClassVar[frozenset[str]] = frozenset({"generate", "chat", "completions"})
    key_required: ClassVar[bool] = False
    env_keys: ClassVar[tuple[str, ...]] = ("HF_API_KEY", "HF_API_TOKEN", "HF_TOKEN")
    metadata_keys: ClassVar[tuple[str, ...]] = ("hf_api_key", "hf_api_token")
    env_base_url: ClassVar[tuple[str, ...]] = ("HF_TGI_API_URL", "HF_TGI_ENDPOINT")
    metadata_base_url: ClassVar[tuple[str, ...]] = ("hf_tgi_api_url", "hf_tgi_endpoint")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)  # honours HF_TGI_API_URL when no base URL is configured
        #: the server's limits, learned from the last /info answer
        self.server_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ limits
    def _limit(self, name: str) -> int | None:
        value = self.option(name)
        if value is None and self.server_info:
            value = self.server_info.get(name)
            if value is None and name == "max_input_tokens":  # TGI 1.x called it so
                value = self.server_info.get("max_input_length")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    @staticmethod
    def _prompt(request: Request) -> tuple[str, int | None]:
        """(prompt text, requested new tokens) of a generate, completions or chat payload
        (for several prompts, the longest)."""
        payload = request.payload
        if request.operation == "generate":
            params = payload.get("parameters") or {}
            return str(payload.get("inputs") or ""), params.get("max_new_tokens")
        if request.operation == "completions":
            prompt = payload.get("prompt")
            texts = prompt if isinstance(prompt, list) else [prompt or ""]
            return max((str(t) for t in texts), key=len, default=""), payload.get("max_tokens")
        want = payload.get("max_tokens", payload.get("max_completion_tokens"))
        return oai.messages_text(payload.get("messages")), want

    def check(self, request: Request) -> None:
        """Besides the usual checks: with ``max_input_tokens`` known (configured, or
        learned from ``info``) reject a prompt that cannot fit before it is queued."""
        super().check(request)
        payload = request.payload
        required = {"generate": "inputs", "chat": "messages", "completions": "prompt",
                    "tokenize": "inputs"}.get(request.operation)
        if required and not payload.get(required):
            raise InvalidRequest(f"{self.name} {request.operation}: payload needs {required!r}",
                                 backend=self.name)
        if request.operation not in ("generate", "chat", "completions"):
            return
        max_in, max_total = self._limit("max_input_tokens"), self._limit("max_total_tokens")
        if max_in is None and max_total is None:
            return
        prompt, want = self._prompt(request)
        ratio = float(self.option("chars_per_token", DEFAULT_CHARS_PER_TOKEN))
        at_least = math.ceil(len(prompt) / ratio)
        if max_in is not None and at_least > max_in:
            raise ContextTooLong(f"prompt of {len(prompt)} characters is at least {at_least} "
                                 f"tokens; the server accepts at most {max_in} input tokens",
                                 backend=self.name, code="context_length_exceeded")
        if max_total is not None and isinstance(want, int) and at_least + want > max_total:
            raise ContextTooLong(f"prompt (at least {at_least} tokens) plus {want} new tokens "
                                 f"exceeds the server's max_total_tokens {max_total}",
                                 backend=self.name, code="context_length_exceeded")

    # ------------------------------------------------------------------ building
    def build_generate(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = {k: v for k, v in request.payload.items() if k != "stream"}
        if request.stream:
            return HttpRequest("POST", self.url("/generate_stream"), json=body,
                               headers={"Content-Type": "application/json",
                                        "Accept": "text/event-stream"})
        return HttpRequest("POST", self.url("/generate"), json=body,
                           headers={"Content-Type": "application/json"})

    def _compat(self, request: Request, path: str) -> HttpRequest:
        body = dict(request.payload)
        body.setdefault("model", "tgi")  # TGI serves one model; "tgi" is its documented name
        headers = {"Content-Type": "application/json"}
        if request.stream:
            body["stream"] = True
            if request.operation == "chat":
                body.setdefault("stream_options", {"include_usage": True})
            headers["Accept"] = "text/event-stream"
        else:
            body.pop("stream", None)
        return HttpRequest("POST", self.url(path), json=body, headers=headers)

    def build_chat(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._compat(request, "/v1/chat/completions")

    def build_completions(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._compat(request, "/v1/completions")

    def build_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("/v1/models"))

    def build_tokenize(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("POST", self.url("/tokenize"), json=dict(request.payload),
                           headers={"Content-Type": "application/json"})

    def build_info(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("/info"))

    def build_health(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("/health"))

    # ------------------------------------------------------------------ parsing

    @staticmethod
    def _header_usage(response: requests.Response) -> Usage | None:
        try:
            p = response.headers.get("x-prompt-tokens")
            c = response.headers.get("x-generated-tokens")
            return Usage.of(int(p), int(c)) if p is not None and c is not None else None
        except ValueError:
            return None

    def parse_generate(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if isinstance(body, list) and body:  # the compat route and the serverless API
            body = body[0]
        if not isinstance(body, dict) or not isinstance(body.get("generated_text"), str):
            raise self.make_error(TransientError, "TGI /generate answered without "
                                  "generated_text", response, code="malformed_response")
        details = body.get("details") if isinstance(body.get("details"), dict) else None
        usage = self._header_usage(response)
        if usage is None and details and isinstance(details.get("generated_tokens"), int):
            usage = Usage.of(len(details.get("prefill") or ()), details["generated_tokens"])
        return Result(text=body["generated_text"],
                      finish_reason=details.get("finish_reason") if details else None,
                      usage=usage, model=(self.server_info or {}).get("model_id"), raw=body,
                      data=details, backend=self.name,
                      request_id=self.provider_request_id(response))

    def parse_chat(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if isinstance(body, dict) and "error" in body and "choices" not in body:
            raise self._stream_error(body, response)
        return oai.parse_chat_completion(body, request_id=self.provider_request_id(response),
                                         make_error=self.error_factory(response))

    def parse_completions(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if isinstance(body, dict) and "error" in body and "choices" not in body:
            raise self._stream_error(body, response)
        return oai.parse_completion(body, request_id=self.provider_request_id(response),
                                    make_error=self.error_factory(response))

    def parse_models(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return oai.parse_model_list(body, request_id=self.provider_request_id(response),
                                        make_error=self.error_factory(response))
        if not isinstance(body, dict) or "id" not in body:  # TGI answers its one model
            raise self.make_error(TransientError, "TGI /v1/models answered without a model id",
                                  response, code="malformed_response")
        return Result(data=[body], raw=body, model=str(body["id"]), backend=self.name,
                      request_id=self.provider_request_id(response))

    def parse_tokenize(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, list):
            raise self.make_error(TransientError, "TGI /tokenize answered a non-list", response,
                                  code="malformed_response")
        return Result(data=body, raw=body, backend=self.name, usage=Usage.of(len(body), 0),
                      request_id=self.provider_request_id(response))

    def parse_info(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict):
            raise self.make_error(TransientError, "TGI /info answered a non-object", response,
                                  code="malformed_response")
        self.server_info = body
        return Result(data=body, raw=body, model=body.get("model_id"), backend=self.name,
                      request_id=self.provider_request_id(response))

    def parse_health(self, request: Request, response: requests.Response) -> Result:
        return Result(data={"healthy": True, "status": response.status_code}, backend=self.name,
                      request_id=self.provider_request_id(response))

    # ------------------------------------------------------------------ streams
    def _events(self, response: requests.Response) -> Iterator[tuple[SSEEvent, Any]]:
        """(event, decoded JSON) pairs; TGI error events raise, non-JSON data raises."""
        for ev in oai.safe_events(response, self.error_factory(response)):
            data = ev.data.strip()
            if data == "[DONE]":
                yield ev, None
                continue
            try:
                obj = json.loads(data)
            except ValueError:
                raise self.make_error(TransientError, f"malformed stream event: {data[:100]!r}",
                                      response, code="malformed_response") from None
            if ev.event == "error" or (isinstance(obj, dict) and "error" in obj):
                raise self._stream_error(obj, response)
            yield ev, obj

    def stream_generate(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        for _, obj in self._events(response):
            if not isinstance(obj, dict) or not isinstance(obj.get("token"), dict):
                raise self.make_error(TransientError, "TGI stream event without a token",
                                      response, code="malformed_response")
            token = obj["token"]
            text = "" if token.get("special") else str(token.get("text") or "")
            if obj.get("generated_text") is None:
                yield StreamChunk(text=text, raw=obj)
                continue
            details = obj.get("details") or {}
            usage = (Usage.of(details.get("input_length"), details.get("generated_tokens"))
                     if details else None)
            yield StreamChunk(text=text, finish_reason=details.get("finish_reason") or "stop"
                              if details else None, usage=usage, raw=obj)
            return  # the event carrying generated_text is the last one
        raise IncompleteStream("TGI stream ended before the event carrying generated_text")

    def stream_completions(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        return self.stream_chat(request, response)

    def stream_chat(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        events = (ev for ev, _ in self._events(response))
        finished = False
        try:
            for chunk in oai.iter_stream_events(events, self.error_factory(response)):
                finished = finished or chunk.finish_reason is not None
                yield chunk
        except IncompleteStream:
            # TGI releases before 2.x end chat streams without ``[DONE]``; a stream that
            # already carried its finish_reason is complete, anything shorter is not.
            if not finished:
                raise

    # ------------------------------------------------------------------ errors
    def _stream_error(self, body: Any, response: requests.Response | None) -> ProviderError:
        """An error carried in a 200 answer (an SSE event or a JSON body)."""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return oai.error_from_body(body, self.error_factory(response))
        message = str(body.get("error") if isinstance(body, dict) else body)
        etype = str(body.get("error_type") or "") if isinstance(body, dict) else ""
        cls = _TYPE_CLASSES.get(etype.lower(), TransientError)
        if cls is InvalidRequest and _TOO_LONG.search(message):
            cls = ContextTooLong
        return self.make_error(cls, message, response, code=etype or None)

    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            info = oai.classify_response(response)  # an OpenAI-style proxy in front of TGI
            return self.make_error(info.cls, info.message, response, code=info.code)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
            etype = str(body.get("error_type") or "") or None
        else:
            message, etype = self.error_message(response)[0], None
        status = response.status_code
        cls: type[ProviderError]
        if status == 429:
            cls = RateLimited
        elif status in (424, 503) or status >= 500:
            cls = TransientError
        elif status in (400, 413, 422):
            cls = ContextTooLong if _TOO_LONG.search(message) else InvalidRequest
        else:
            cls = error_for_status(status)
        estimated = body.get("estimated_time") if isinstance(body, dict) else None
        retry_after = float(estimated) if isinstance(estimated, (int, float)) else None
        return self.make_error(cls, message, response, code=etype, retry_after=retry_after)

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        # Self-hosted TGI sends none; a hosted gateway in front of it may send OpenAI-style ones.
        info = parse_openai_headers(response.headers)
        return None if info.is_empty() else info
