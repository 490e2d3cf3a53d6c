"""The OpenAI REST API, client side: build requests, parse answers, classify errors."""

from __future__ import annotations

import json
import os
from typing import Any, Hashable, Iterator, Mapping, Sequence
from urllib.parse import quote

import attrs

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import InvalidRequest, ProviderError, TransientError
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request, new_request_id
from ipfs_accelerate_py.results import Result, StreamChunk, Usage
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire.counts import check_batch, check_count
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers


#: The API takes at most this many inputs in one embeddings call.
MAX_EMBEDDING_INPUTS = 2048
#: ... and at most this many tokens summed over them.
MAX_EMBEDDING_BATCH_TOKENS = 300_000

#: payload keys each operation cannot do without (checked before queueing).
_REQUIRED = {"chat": ("model", "messages"), "completions": ("model", "prompt"),
             "embeddings": ("model", "input"), "moderations": ("input",), "model": ("model",)}


class OpenAIBackend(Backend):
    """OpenAI's REST API (``https://api.openai.com/v1``) and servers that copy it exactly.

    Options (``BackendConfig.options``): ``organization`` and ``project`` (sent as
    ``OpenAI-Organization`` / ``OpenAI-Project``; else from ``OPENAI_ORGANIZATION`` /
    ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT`` / ``OPENAI_PROJECT_ID``), ``embedding_batch_size``
    (default 2048), ``send_request_id`` (default True).
    """

    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    base_url_version = "/v1"
    operations = {
        "chat": "POST /chat/completions (messages, tools, response_format, n, logprobs...; streams)",
        "completions": "POST /completions, legacy text completion (streams)",
        "embeddings": "POST /embeddings, one input or a list (single inputs are batched)",
        "moderations": "POST /moderations, classify text for policy categories",
        "models": "GET /models, the models the key can use",
        "model": "GET /models/{model}, one model's details",
    }
    streaming_operations = frozenset({"chat", "completions"})
    env_keys = ("OPENAI_API_KEY",)
    metadata_keys = ("openai_api_key",)
    env_base_url = ("OPENAI_BASE_URL",)
    metadata_base_url = ("openai_base_url", "openai_api_base")
    # OpenAI logs a caller-chosen id sent as X-Client-Request-Id (ASCII, <= 512 chars) and
    # returns its own id in x-request-id.
    request_id_header = "X-Client-Request-Id"
    response_id_header = "x-request-id"

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        env = os.environ
        self.organization: str | None = (self.option("organization") or env.get("OPENAI_ORGANIZATION")
                                         or env.get("OPENAI_ORG_ID") or None)
        self.project: str | None = (self.option("project") or env.get("OPENAI_PROJECT")
                                    or env.get("OPENAI_PROJECT_ID") or None)

    @classmethod
    def options_from(cls, metadata: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Backend options from the original system's metadata (``openai_organization``,
        ``openai_project``)."""
        metadata = metadata or {}
        out = {}
        for meta, opt in (("openai_organization", "organization"), ("openai_project", "project")):
            if metadata.get(meta):
                out[opt] = str(metadata[meta])
        return out

    # ------------------------------------------------------------------ common
    def check(self, request: Request) -> None:
        super().check(request)
        payload = request.payload if isinstance(request.payload, Mapping) else {}
        missing = [k for k in _REQUIRED.get(request.operation, ()) if payload.get(k) in (None, "", [])]
        if missing:
            raise InvalidRequest(f"{self.name} {request.operation}: payload needs "
                                 f"{', '.join(missing)}", backend=self.name)

    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        headers = super().auth_headers(key)
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def _post(self, path: str, request: Request, *, streamable: bool = False) -> HttpRequest:
        body = dict(request.payload)
        body.pop("stream", None)
        options = body.pop("stream_options", None)
        if streamable and request.stream:
            body["stream"] = True
            # Without include_usage a stream carries no token counts, and the limiter and
            # stats would never learn what it cost.
            body["stream_options"] = {"include_usage": True, **(options or {})}
        return HttpRequest("POST", self.url(path), json=body)

    def classify_error(self, request: Request | None, response: Any) -> ProviderError:
        info = oc.classify_response(response)
        return self.make_error(info.cls, info.message, response, code=info.code)

    def rate_limit_info(self, response: Any) -> RateLimitInfo | None:
        info = parse_openai_headers(response.headers)
        return None if info.is_empty() else info

    # ------------------------------------------------------------------ chat
    def build_chat(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post("chat/completions", request, streamable=True)

    def parse_chat(self, request: Request, response: Any) -> Result:
        return oc.parse_chat_completion(self.decode_json(response),
                                        request_id=self.provider_request_id(response),
                                        make_error=self.error_factory(response))

    def stream_chat(self, request: Request, response: Any) -> Iterator[StreamChunk]:
        return oc.iter_stream(response, self.error_factory(response))

    # ------------------------------------------------------------------ completions
    def build_completions(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post("completions", request, streamable=True)

    def parse_completions(self, request: Request, response: Any) -> Result:
        return oc.parse_completion(self.decode_json(response),
                                   request_id=self.provider_request_id(response),
                                   make_error=self.error_factory(response))

    def stream_completions(self, request: Request, response: Any) -> Iterator[StreamChunk]:
        return oc.iter_stream(response, self.error_factory(response))

    # ------------------------------------------------------------------ embeddings
    def build_embeddings(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post("embeddings", request)

    def parse_embeddings(self, request: Request, response: Any) -> Result:
        return oc.parse_embeddings(self.decode_json(response),
                                   expected=oc.embedding_inputs(request.payload.get("input")),
                                   request_id=self.provider_request_id(response),
                                   make_error=self.error_factory(response))

    # ------------------------------------------------------------------ moderations
    def build_moderations(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post("moderations", request)

    def parse_moderations(self, request: Request, response: Any) -> Result:
        body = self.decode_json(response)
        results = body.get("results") if isinstance(body, Mapping) else None
        if not isinstance(results, list):
            raise self.make_error(TransientError, "moderation response has no results", response,
                                  code="malformed_response")
        texts = request.payload.get("input")
        if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
            # One result per text (multimodal parts answer one result for the whole input).
            check_count(f"{self.name} moderations", len(texts), results,
                        self.error_factory(response))
        return Result(model=body.get("model"), request_id=self.provider_request_id(response),
                      raw=body, data=results)

    # ------------------------------------------------------------------ models
    def build_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("models"))

    def parse_models(self, request: Request, response: Any) -> Result:
        return oc.parse_model_list(self.decode_json(response),
                                   request_id=self.provider_request_id(response),
                                   make_error=self.error_factory(response))

    def build_model(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("models/" + quote(str(request.payload["model"]), safe=":")))

    def parse_model(self, request: Request, response: Any) -> Result:
        return oc.parse_model(self.decode_json(response),
                              request_id=self.provider_request_id(response),
                              make_error=self.error_factory(response))

    # ------------------------------------------------------------------ batching
    def batch_key(self, request: Request) -> Hashable | None:
        """Single-string embedding requests with equal settings (model, dimensions,
        encoding_format, user...) and the same key pin coalesce into one call."""
        if request.operation != "embeddings" or request.stream:
            return None
        if not isinstance(request.payload.get("input"), str):
            return None
        rest = {k: v for k, v in request.payload.items() if k != "input"}
        return ("embeddings", request.key, json.dumps(rest, sort_keys=True, default=str))

    def max_batch_size(self, request: Request) -> int:
        limit = min(MAX_EMBEDDING_INPUTS, int(self.option("embedding_batch_size", MAX_EMBEDDING_INPUTS)))
        text = request.payload.get("input")
        if isinstance(text, str):
            # Stay under the per-call token cap, estimating tokens generously (3 chars each).
            limit = min(limit, max(1, MAX_EMBEDDING_BATCH_TOKENS // (len(text) // 3 + 1)))
        return max(1, limit)

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0]
        payload = {**first.payload, "input": [r.payload["input"] for r in requests]}
        return first.evolve(payload=payload, request_id=new_request_id(),
                            tags={**first.tags, "batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        vectors = result.data
        check_batch(f"{self.name} embeddings", requests, vectors, self.error_factory(None))
        usages = _split_usage(result.usage, [len(r.payload["input"]) for r in requests])
        return [attrs.evolve(result, data=[vec], usage=u) for vec, u in zip(vectors, usages)]


def _split_usage(usage: Usage | None, weights: list[int]) -> list[Usage | None]:
    """Share a batch's prompt tokens among its inputs in proportion to their length (the
    API reports only the total); the shares add up to the total exactly."""
    if usage is None:
        return [None] * len(weights)
    weights = [max(1, w) for w in weights]
    total_w = sum(weights)
    shares, given = [], 0
    for i, w in enumerate(weights):
        if i == len(weights) - 1:
            n = usage.prompt_tokens - given
        else:
            n = usage.prompt_tokens * w // total_w
        given += n
        shares.append(Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n))
    return shares
