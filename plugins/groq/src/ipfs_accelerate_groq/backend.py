"""Groq's OpenAI-compatible API (``/openai/v1``), client side."""

from __future__ import annotations

from typing import Any, Iterator, Mapping
from urllib.parse import quote, urlsplit

import attrs

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import InvalidRequest, ProviderError, RateLimited, TransientError
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result, StreamChunk
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers


#: Groq's API host: only it gets the ``/openai/v1`` prefix added to a bare base URL.
GROQ_HOST = "api.groq.com"
#: Groq's x-ratelimit-*-requests headers count requests per day (tokens: per minute).
REQUEST_WINDOW = 86_400.0


class GroqBackend(Backend):
    """Groq (``https://api.groq.com/openai/v1``): chat completions and model listing.

    Groq's own host given without a path (``https://api.groq.com``, the Groq SDK's
    convention) gets ``/openai/v1`` appended; any other base URL (a proxy, a self-hosted
    OpenAI-compatible server) is used as given.  Groq takes no client request id header, so none is sent.
    """

    name = "groq"
    default_base_url = "https://api.groq.com/openai/v1"
    base_url_version = "/openai/v1"
    operations = {
        "chat": "POST /chat/completions (messages, tools, response_format, seed...; streams)",
        "models": "GET /models, the models the key can use (with context_window)",
        "model": "GET /models/{model}, one model's details",
    }
    streaming_operations = frozenset({"chat"})
    env_keys = ("GROQ_API_KEY",)
    metadata_keys = ("groq_api_key",)
    request_id_header = None
    response_id_header = "x-request-id"

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        parts = urlsplit(self.base_url)
        if parts.path in ("", "/") and parts.hostname == GROQ_HOST:
            self.base_url = self.base_url.rstrip("/") + "/openai/v1"

    def check(self, request: Request) -> None:
        super().check(request)
        need = {"chat": ("model", "messages"), "model": ("model",)}.get(request.operation, ())
        missing = [k for k in need if request.payload.get(k) in (None, "", [])]
        if missing:
            raise InvalidRequest(f"groq {request.operation}: payload needs {', '.join(missing)}",
                                 backend=self.name)

    def classify_error(self, request: Request | None, response: Any) -> ProviderError:
        info = oc.classify_error_body(*_decoded(response))
        cls = info.cls
        if response.status_code == 498:  # flex tier at capacity: a "come back later", not an outage
            cls = RateLimited
        elif response.status_code == 499:  # request cancelled upstream
            cls = TransientError
        return self.make_error(cls, info.message, response, code=info.code)

    def rate_limit_info(self, response: Any) -> RateLimitInfo | None:
        # Read as said: the request limit is per day (the limiter's prior), the reset the
        # time until the bucket is full.  Rate, capacity and any wait are the limiter's to
        # derive from these (an exhausted daily quota paces at the refill, not a day).
        info = parse_openai_headers(response.headers, request_window=REQUEST_WINDOW)
        return None if info.is_empty() else info

    # ------------------------------------------------------------------ chat
    def build_chat(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = dict(request.payload)
        body.pop("stream", None)
        options = body.pop("stream_options", None)
        if request.stream:
            body["stream"] = True
            if options:  # Groq reports stream usage in x_groq anyway; pass the caller's own
                body["stream_options"] = options
        return HttpRequest("POST", self.url("chat/completions"), json=body)

    def parse_chat(self, request: Request, response: Any) -> Result:
        return oc.parse_chat_completion(self.decode_json(response),
                                        request_id=self.provider_request_id(response),
                                        make_error=self.error_factory(response))

    def stream_chat(self, request: Request, response: Any) -> Iterator[StreamChunk]:
        for chunk in oc.iter_stream(response, self.error_factory(response)):
            if chunk.usage is None and isinstance(chunk.raw, Mapping):
                extra = chunk.raw.get("x_groq")
                if isinstance(extra, Mapping) and extra.get("usage"):
                    # Groq puts a stream's token counts in x_groq.usage on its last chunk.
                    chunk = attrs.evolve(chunk, usage=oc.parse_usage(extra["usage"]))
            yield chunk

    # ------------------------------------------------------------------ models
    def build_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("models"))

    def parse_models(self, request: Request, response: Any) -> Result:
        return oc.parse_model_list(self.decode_json(response),
                                   request_id=self.provider_request_id(response),
                                   make_error=self.error_factory(response))

    def build_model(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("models/" + quote(str(request.payload["model"]), safe="/")))

    def parse_model(self, request: Request, response: Any) -> Result:
        return oc.parse_model(self.decode_json(response),
                              request_id=self.provider_request_id(response),
                              make_error=self.error_factory(response))


def _decoded(response: Any) -> tuple[int, Any, str]:
    try:
        return response.status_code, response.json(), ""
    except ValueError:
        return response.status_code, None, response.text
