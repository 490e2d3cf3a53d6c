"""The client side of the Gemini API (Google Generative Language API, v1beta)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Hashable, Iterator, Mapping, Sequence
from urllib.parse import quote

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import (
    ContentFiltered,
    InvalidRequest,
    ProviderError,
    TransientError,
    error_for_status,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request, new_request_id
from ipfs_accelerate_py.results import Result, StreamChunk, ToolCall, ToolCallDelta, Usage
from ipfs_accelerate_py.wire.counts import check_batch, check_count
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_retry_after

from .convert import ConversionError, embed_request, generate_body
from .errors import FILTER_REASONS, error_class, error_fields, retry_delay
from .stream import iter_generate_stream

if TYPE_CHECKING:  # pragma: no cover
    import requests

API_VERSION = "v1beta"
MAX_BATCH_EMBED = 100  # batchEmbedContents takes at most 100 requests


class GeminiBackend(Backend):
    """Gemini: ``generate`` (alias ``chat``; both stream), ``embed``, ``batch_embed``,
    ``count_tokens``, ``models``, ``model``.  The key travels in ``x-goog-api-key``, never
    in the URL (URLs end up in logs and proxies).

    Options: ``api_version`` (default ``v1beta``), ``model`` (used when a payload names
    none), ``max_batch_size`` (embed coalescing, default and maximum 100).
    """

    name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    operations = {
        "generate": "generateContent: native contents or OpenAI-style messages; streams (alt=sse)",
        "chat": "alias of generate",
        "embed": "embedContent: one text (queued ones are coalesced into batchEmbedContents)",
        "batch_embed": "batchEmbedContents: many texts or EmbedContentRequests in one call",
        "count_tokens": "countTokens of contents, messages or a generateContentRequest",
        "models": "list models (one page: pageSize, pageToken)",
        "model": "describe one model (payload {'model': name})",
    }
    streaming_operations = frozenset({"generate", "chat"})
    key_required = True
    env_keys = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    secret_headers = frozenset({"x-goog-api-key"})
    metadata_keys = ("gemini_api_key", "google_api_key")
    request_id_header = None  # Gemini accepts no client request id
    response_id_header = None

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        # A base URL that already ends in the version (".../v1beta") is accepted as is.
        self.api_version = str(self.option("api_version", API_VERSION))
        head, _, tail = self.base_url.rpartition("/")
        if tail in ("v1", "v1beta", "v1alpha") and head.startswith("http"):
            self.base_url, self.api_version = head, tail

    # ------------------------------------------------------------------ helpers
    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        secret = key.reveal() if key is not None else None
        return {"x-goog-api-key": secret} if secret else {}

    def model_path(self, payload: Mapping[str, Any]) -> str:
        """``models/<id>`` for the payload's model (``tunedModels/...`` kept as is)."""
        model = payload.get("model") or self.option("model")
        if not model:
            raise InvalidRequest("gemini: payload needs a 'model'", backend=self.name)
        model = str(model)
        return model if "/" in model else "models/" + model

    def _url(self, resource: str, method: str | None = None) -> str:
        path = f"/{self.api_version}/{quote(resource, safe='/')}"
        return self.url(path + (f":{method}" if method else ""))

    def _post(self, request: Request, method: str, body: Any, **kw: Any) -> HttpRequest:
        return HttpRequest("POST", self._url(self.model_path(request.payload), method),
                           headers={"content-type": "application/json"}, json=body, **kw)

    def _invalid(self, exc: Exception) -> InvalidRequest:
        return InvalidRequest(f"gemini: {exc}", backend=self.name)

    # ------------------------------------------------------------------ generate / chat
    def build_generate(self, request: Request, key: ApiKey | None) -> HttpRequest:
        try:
            body = generate_body(request.payload)
        except ConversionError as exc:
            raise self._invalid(exc) from None
        if request.stream:
            return self._post(request, "streamGenerateContent", body, params={"alt": "sse"},
                              stream=True)
        return self._post(request, "generateContent", body)

    build_chat = build_generate

    def parse_generate(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict):
            raise self.make_error(TransientError, "gemini: success body is not an object",
                                  response, code="malformed_response")
        self.check_blocked(body, response)
        candidates = body.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise self.make_error(TransientError, "gemini: answer without candidates",
                                  response, code="no_candidates")
        text, calls, finish = read_candidate(candidates[0])
        return Result(text=text, tool_calls=tuple(ToolCall(**c) for c in calls),
                      finish_reason=finish, usage=read_usage(body.get("usageMetadata")),
                      model=body.get("modelVersion") or request.payload.get("model"),
                      request_id=body.get("responseId"), raw=body, backend=self.name)

    parse_chat = parse_generate

    def stream_generate(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        return iter_generate_stream(self, request, response)

    stream_chat = stream_generate

    def whole_answer(self, request: Request, response: requests.Response) -> StreamChunk | None:
        """streamGenerateContent without ``alt=sse`` (a proxy that drops the parameter)
        answers one JSON array of the stream's pieces: joined into one chunk."""
        try:
            body = response.json()
        except ValueError:
            return None  # not JSON after all: the SSE parser reads it
        if not isinstance(body, list):
            return super().whole_answer(request, response)
        if not body or not all(isinstance(piece, dict) for piece in body):
            raise self.make_error(TransientError, "gemini: stream answer is not a list of "
                                  "responses", response, code="malformed_response")
        texts, calls, finish = [], [], None
        for piece in body:
            self.check_blocked(piece, response)
            for cand in (piece.get("candidates") or [])[:1]:
                text, piece_calls, piece_finish = read_candidate(cand)
                texts.append(text or "")
                calls.extend(piece_calls)
                finish = piece_finish or finish
        return StreamChunk(text="".join(texts),
                           tool_calls=tuple(ToolCallDelta(index=i, id=c.get("id"), name=c["name"],
                                                          arguments=c.get("arguments", ""))
                                            for i, c in enumerate(calls)),
                           finish_reason=finish or "stop",
                           usage=read_usage(body[-1].get("usageMetadata")),
                           model=body[-1].get("modelVersion") or request.payload.get("model"),
                           raw=body)

    def check_blocked(self, body: Mapping[str, Any], response: requests.Response | None) -> None:
        """Raise ContentFiltered for a blocked prompt or a candidate stopped by a filter."""
        feedback = body.get("promptFeedback") or {}
        reason = feedback.get("blockReason")
        if reason and reason != "BLOCK_REASON_UNSPECIFIED":
            raise self._filtered(f"gemini blocked the prompt: {reason}", reason, response)
        for cand in body.get("candidates") or []:
            finish = cand.get("finishReason") if isinstance(cand, dict) else None
            if finish in FILTER_REASONS:
                raise self._filtered(f"gemini stopped the answer: finishReason {finish}",
                                     finish, response)

    def _filtered(self, message: str, code: str, response: requests.Response | None) -> ProviderError:
        return ContentFiltered(message, code=code, backend=self.name,
                               status=response.status_code if response is not None else None)

    # ------------------------------------------------------------------ embeddings
    def _embed_input(self, payload: Mapping[str, Any]) -> Any:
        for name in ("content", "text", "input"):
            if name in payload:
                return payload[name]
        raise InvalidRequest("gemini embed: payload needs 'content', 'text' or 'input'",
                             backend=self.name)

    def build_embed(self, request: Request, key: ApiKey | None) -> HttpRequest:
        item = self._embed_input(request.payload)
        if isinstance(item, list):
            if len(item) != 1:
                raise InvalidRequest("gemini embed takes one input; use batch_embed for a list",
                                     backend=self.name)
            item = item[0]
        try:
            body = embed_request(self.model_path(request.payload), item, request.payload)
        except ConversionError as exc:
            raise self._invalid(exc) from None
        return self._post(request, "embedContent", body)

    def parse_embed(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        values = ((body.get("embedding") or {}).get("values") if isinstance(body, dict) else None)
        if not isinstance(values, list):
            raise self.make_error(TransientError, "gemini embedContent: no embedding.values",
                                  response, code="malformed_response")
        return Result(data=[values], model=request.payload.get("model"), raw=body, backend=self.name)

    def _batch_items(self, payload: Mapping[str, Any]) -> Any:
        """The inputs of a batch_embed payload: ``requests``, else the content list."""
        items = payload.get("requests")
        if items is None:
            items = self._embed_input(payload)
            items = items if isinstance(items, list) else [items]
        return items

    def build_batch_embed(self, request: Request, key: ApiKey | None) -> HttpRequest:
        payload = request.payload
        model = self.model_path(payload)
        items = self._batch_items(payload)
        if not isinstance(items, list) or not items:
            raise InvalidRequest("gemini batch_embed: needs a non-empty list", backend=self.name)
        try:
            reqs = [embed_request(model, item, payload) for item in items]
        except ConversionError as exc:
            raise self._invalid(exc) from None
        return self._post(request, "batchEmbedContents", {"requests": reqs})

    def parse_batch_embed(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        if not isinstance(embeddings, list) or not all(
                isinstance(e, dict) and isinstance(e.get("values"), list) for e in embeddings):
            raise self.make_error(TransientError, "gemini batchEmbedContents: no embeddings list",
                                  response, code="malformed_response")
        check_count(f"{self.name} batch_embed", len(self._batch_items(request.payload)),
                    embeddings, self.error_factory(response))
        return Result(data=[e["values"] for e in embeddings], model=request.payload.get("model"),
                      raw=body, backend=self.name)

    # Coalescing: queued single ``embed`` requests for one model become one batch call.
    def batch_key(self, request: Request) -> Hashable | None:
        if request.operation != "embed" or request.stream:
            return None
        try:
            model = self.model_path(request.payload)
            item = self._embed_input(request.payload)
        except InvalidRequest:
            return None  # build_embed will report it
        if isinstance(item, list) and len(item) != 1:
            return None
        return ("embed", model, request.key)

    def max_batch_size(self, request: Request) -> int:
        return max(1, min(MAX_BATCH_EMBED, int(self.option("max_batch_size", MAX_BATCH_EMBED))))

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0]
        model = self.model_path(first.payload)
        items = []
        for r in requests:
            item = self._embed_input(r.payload)
            item = item[0] if isinstance(item, list) else item
            try:
                items.append(embed_request(model, item, r.payload))
            except ConversionError as exc:
                raise self._invalid(exc) from None
        return first.evolve(operation="batch_embed",
                            payload={"model": first.payload.get("model"), "requests": items},
                            request_id=new_request_id(),
                            priority=min(r.priority for r in requests),
                            tags={"batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        vectors = result.data
        check_batch(f"{self.name} embed", requests, vectors, self.error_factory(None))
        return [Result(data=[vec], raw={"embedding": {"values": vec}}, model=result.model,
                       backend=self.name, request_id=req.request_id)
                for req, vec in zip(requests, vectors)]

    # ------------------------------------------------------------------ count_tokens
    def build_count_tokens(self, request: Request, key: ApiKey | None) -> HttpRequest:
        payload = request.payload
        model = self.model_path(payload)
        if "generateContentRequest" in payload:
            body: dict[str, Any] = {"generateContentRequest": payload["generateContentRequest"]}
        else:
            try:
                inner = generate_body(payload)
            except ConversionError as exc:
                raise self._invalid(exc) from None
            if set(inner) == {"contents"}:
                body = inner
            else:  # system instruction, tools or config only fit in a generateContentRequest
                body = {"generateContentRequest": {"model": model, **inner}}
        return self._post(request, "countTokens", body)

    def parse_count_tokens(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        total = body.get("totalTokens") if isinstance(body, dict) else None
        if not isinstance(total, int):
            raise self.make_error(TransientError, "gemini countTokens: no totalTokens",
                                  response, code="malformed_response")
        return Result(data=total, usage=Usage.of(total, 0), model=request.payload.get("model"),
                      raw=body, backend=self.name)

    # ------------------------------------------------------------------ models
    def build_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        params = {}
        size = p.get("pageSize", p.get("page_size", p.get("limit")))
        token = p.get("pageToken", p.get("page_token"))
        if size is not None:
            params["pageSize"] = size
        if token:
            params["pageToken"] = token
        return HttpRequest("GET", self._url("models"), params=params or None)

    def parse_models(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        models = body.get("models", []) if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise self.make_error(TransientError, "gemini models: no models list",
                                  response, code="malformed_response")
        return Result(data=[_with_id(m) for m in models], raw=body, backend=self.name)

    def build_model(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self._url(self.model_path(request.payload)))

    def parse_model(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict) or "name" not in body:
            raise self.make_error(TransientError, "gemini model: body without a name",
                                  response, code="malformed_response")
        model = _with_id(body)
        return Result(data=model, model=model["id"], raw=body, backend=self.name)

    def estimate_tokens(self, request: Request) -> int:
        """The base estimate, plus ``generationConfig.maxOutputTokens`` (where Gemini keeps it)."""
        estimate = super().estimate_tokens(request)
        config = request.payload.get("generationConfig")
        limit = config.get("maxOutputTokens") if isinstance(config, Mapping) else None
        return estimate + limit if isinstance(limit, int) and "max_tokens" not in request.payload else estimate

    # ------------------------------------------------------------------ errors and limits
    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        status, message, details = error_fields(body)
        if message is None:
            message, _ = self.error_message(response)
        cls = error_class(status, message, details) or error_for_status(response.status_code)
        return self.make_error(cls, message, response, code=status,
                               retry_after=retry_delay(details))

    def stream_error(self, chunk: Any, response: requests.Response) -> ProviderError:
        """The classified error an error object inside a stream carries."""
        status, message, details = error_fields(chunk)
        message = message or "error in stream"
        cls = error_class(status, message, details) or TransientError
        return cls(message, code=status, retry_after=retry_delay(details), backend=self.name)

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        """Gemini sends no quota headers; a 429 says how long to wait in RetryInfo."""
        if response.status_code != 429:
            return None
        try:
            _, _, details = error_fields(response.json())
        except ValueError:
            details = []
        wait = retry_delay(details)
        if wait is None:
            wait = parse_retry_after(response.headers)
        return RateLimitInfo(retry_after=wait) if wait is not None else None


def read_candidate(cand: Any) -> tuple[str, list[dict[str, Any]], str | None]:
    """(text, tool calls as ToolCall kwargs, finishReason) of one candidate."""
    if not isinstance(cand, dict):
        return "", [], None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (cand.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict):
            continue
        if "text" in part and not part.get("thought"):
            texts.append(str(part["text"]))
        elif isinstance(part.get("functionCall"), dict):
            fc = part["functionCall"]
            calls.append({"id": fc.get("id"), "name": str(fc.get("name") or ""),
                          "arguments": json.dumps(fc.get("args") or {})})
    return "".join(texts), calls, cand.get("finishReason")


def read_usage(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    # thoughtsTokenCount (billed as output) is not in candidatesTokenCount: Usage counts
    # reasoning within completion_tokens.  cachedContentTokenCount is within the prompt.
    thoughts = _count(meta.get("thoughtsTokenCount"))
    return Usage.of(meta.get("promptTokenCount"), _count(meta.get("candidatesTokenCount")) + thoughts,
                    meta.get("totalTokenCount"), cached=_count(meta.get("cachedContentTokenCount")),
                    reasoning=thoughts)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _with_id(model: Any) -> Any:
    """A model object with ``id`` (its name without ``models/``), like other backends' lists."""
    if isinstance(model, dict) and "id" not in model and isinstance(model.get("name"), str):
        return {"id": model["name"].split("/", 1)[-1], **model}
    return model
