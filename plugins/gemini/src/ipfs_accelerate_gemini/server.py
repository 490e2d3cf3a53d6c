"""The server side of the Gemini API: answers like generativelanguage.googleapis.com (v1beta).

Routes under ``/v1beta/models/{model}``: ``:generateContent``, ``:streamGenerateContent``
(SSE with ``alt=sse``, else a JSON array), ``:embedContent``, ``:batchEmbedContents``,
``:countTokens``; ``GET /v1beta/models`` (paged) and ``GET /v1beta/models/{model}``.
The key is read from ``x-goog-api-key`` (or ``?key=``, which the real API also accepts).
Errors use Google's ``{"error": {"code", "message", "status", "details"}}``; the 429 is
RESOURCE_EXHAUSTED with a ``RetryInfo.retryDelay`` and no rate-limit headers, like Google's.
Content is deterministic under the seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import threading
from typing import Any, Iterable, Sequence

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo
from ipfs_accelerate_py.wire.sse import format_sse

STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

DEFAULT_MODELS = ("gemini-sim-flash", "gemini-sim-pro", "text-embedding-sim")

_WORDS = ("a steady pipeline keeps every request alive inside its quota while the breaker "
          "watches the endpoint and the limiter spends tokens as fast as the key allows").split()


def _tokens(obj: Any) -> int:
    """A rough, deterministic token count (about four characters per token)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return max(1, (len(text) + 3) // 4)


def _texts(contents: Any) -> str:
    out = []
    for c in contents or []:
        for p in (c.get("parts") or []) if isinstance(c, dict) else []:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                out.append(p["text"])
    return " ".join(out)


def _duration(seconds: float) -> str:
    """A google.protobuf.Duration in JSON form: "13s", "0.25s"."""
    return f"{max(0.0, round(seconds, 3)):g}s"


class GeminiServer(ProtocolServer):
    """A local Gemini API.  ``models`` are the names it lists (generation accepts any);
    ``input_token_limit`` is the prompt size above which it refuses the input;
    ``invalid_keys`` are keys it answers with Google's "API key not valid"."""

    name = "gemini"

    def __init__(self, seed: int = 0, models: Iterable[str] = DEFAULT_MODELS,
                 input_token_limit: int = 1_048_576, embedding_dim: int = 768,
                 invalid_keys: Iterable[str] = ()) -> None:
        super().__init__(seed)
        self.seed = seed
        self.models = list(models)
        self.input_token_limit = input_token_limit
        self.embedding_dim = embedding_dim
        self.invalid_keys = set(invalid_keys)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ protocol hooks
    def key_of(self, req: ServerRequest) -> str | None:
        return req.header("x-goog-api-key") or req.arg("key")

    def error(self, req: ServerRequest, status: int, message: str,
              details: list[dict[str, Any]] | None = None) -> ServerResponse:
        err: dict[str, Any] = {"code": status, "message": message,
                               "status": STATUS_NAMES.get(status, "INTERNAL" if status >= 500
                                                          else "INVALID_ARGUMENT")}
        if details:
            err["details"] = details
        return ServerResponse.json({"error": err}, status)

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        return {}  # Gemini sends no quota headers

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        delay = info.retry_after if info.retry_after is not None else 1.0
        return self.error(req, 429, "You exceeded your current quota, please check your plan and "
                                    "billing details.", [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.Help",
             "links": [{"description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo",
             "retryDelay": _duration(delay)},
        ])

    def unavailable(self, req: ServerRequest) -> ServerResponse:
        """Google's 503: the model is overloaded (transient)."""
        return self.error(req, 503, "The model is overloaded. Please try again later.")

    # ------------------------------------------------------------------ helpers
    def _response_id(self) -> str:
        with self._lock:
            n = next(self._ids)
        return hashlib.sha256(f"{self.seed}:{n}".encode()).hexdigest()[:22]

    def _auth(self, req: ServerRequest) -> ServerResponse | None:
        key = self.key_of(req)
        if not key:
            return self.error(req, 403, "Method doesn't allow unregistered callers (callers without "
                                        "established identity). Please use API Key or other form of "
                                        "API consumer identity to call this API.")
        if key in self.invalid_keys:
            return self.error(req, 400, "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}}])
        return None

    def _body(self, req: ServerRequest, name: str) -> tuple[dict[str, Any] | None, ServerResponse | None]:
        failure = self._auth(req)
        if failure is not None:
            return None, failure
        try:
            body = req.json()
        except ValueError:
            return None, self.error(req, 400, "Invalid JSON payload received. Unexpected token.")
        if not isinstance(body, dict):
            return None, self.error(req, 400, f"Invalid JSON payload received. {name} must be an object.")
        return body, None

    def _check_contents(self, req: ServerRequest, body: dict[str, Any]) -> ServerResponse | None:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return self.error(req, 400, "* GenerateContentRequest.contents: contents is not specified\n")
        for i, c in enumerate(contents):
            if not isinstance(c, dict) or not c.get("parts"):
                return self.error(req, 400, f"* GenerateContentRequest.contents[{i}].parts: "
                                            "contents.parts must not be empty.\n")
            if c.get("role", "user") not in ("user", "model", "function"):
                return self.error(req, 400, "Please use a valid role: user, model.")
        prompt = self.prompt_tokens(body)
        if prompt > self.input_token_limit:
            return self.error(req, 400, f"The input token count ({prompt}) exceeds the maximum "
                                        f"number of tokens allowed ({self.input_token_limit}).")
        return None

    @staticmethod
    def prompt_tokens(body: dict[str, Any]) -> int:
        return _tokens({k: body.get(k) for k in ("contents", "systemInstruction", "tools")})

    # ------------------------------------------------------------------ content
    def generate(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """The GenerateContentResponse a request gets (text, or a functionCall)."""
        config = body.get("generationConfig") or {}
        prompt = self.prompt_tokens(body)
        call = self._pick_function(body)
        if call is not None:
            parts: list[dict[str, Any]] = [{"functionCall": call}]
            finish, out = "STOP", _tokens(call)
        else:
            rng = random.Random(hashlib.sha256(
                f"{self.seed}:{_texts(body['contents'][-1:])}".encode()).digest())
            words = [rng.choice(_WORDS) for _ in range(8 + rng.randrange(16))]
            finish = "STOP"
            limit = config.get("maxOutputTokens")
            if isinstance(limit, int) and len(words) > limit:
                words, finish = words[:limit], "MAX_TOKENS"
            text = " ".join(words)
            for seq in config.get("stopSequences") or []:
                if seq and seq in text:
                    text = text[:text.index(seq)]
                    break
            parts, out = [{"text": text}], max(1, len(text.split()))
        return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish,
                                "index": 0, "safetyRatings": [
                                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
                                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                     "probability": "NEGLIGIBLE"}]}],
                "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out,
                                  "totalTokenCount": prompt + out},
                "modelVersion": model, "responseId": self._response_id()}

    @staticmethod
    def _pick_function(body: dict[str, Any]) -> dict[str, Any] | None:
        decls = [d for t in body.get("tools") or [] if isinstance(t, dict)
                 for d in t.get("functionDeclarations") or [] if isinstance(d, dict)]
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
        if not decls or mode == "NONE":
            return None
        last = body["contents"][-1].get("parts") or []
        if any(isinstance(p, dict) and "functionResponse" in p for p in last):
            return None  # the function already answered: reply with text
        allowed = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get(
            "allowedFunctionNames") or []
        decl = next((d for d in decls if d.get("name") in allowed), decls[0])
        props = (decl.get("parameters") or {}).get("properties") or {}
        samples = {"STRING": "example", "INTEGER": 1, "NUMBER": 1.5, "BOOLEAN": True}
        args = {k: (v.get("enum") or [samples.get(str(v.get("type", "")).upper(), "example")])[0]
                for k, v in props.items() if isinstance(v, dict)}
        return {"name": decl["name"], "args": args}

    def stream_chunks(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        """A GenerateContentResponse cut into the chunks streamGenerateContent sends."""
        cand = response["candidates"][0]
        parts = cand["content"]["parts"]
        usage = response["usageMetadata"]
        base = {"modelVersion": response["modelVersion"], "responseId": response["responseId"]}
        if "text" not in parts[0]:
            return [{"candidates": [cand], "usageMetadata": usage, **base}]
        words = parts[0]["text"].split(" ")
        pieces = [" ".join(words[i:i + 4]) + (" " if i + 4 < len(words) else "")
                  for i in range(0, len(words), 4)]
        chunks = []
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            c: dict[str, Any] = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
            if last:
                c["finishReason"] = cand["finishReason"]
                c["safetyRatings"] = cand["safetyRatings"]
            chunks.append({"candidates": [c], "usageMetadata": usage if last else
                           {"promptTokenCount": usage["promptTokenCount"],
                            "totalTokenCount": usage["promptTokenCount"]}, **base})
        return chunks

    @staticmethod
    def sse(chunks: Sequence[Any]) -> list[bytes]:
        """Chunks framed the way ``alt=sse`` frames them."""
        return [format_sse(c) for c in chunks]

    def embedding(self, text: str, dim: int | None = None) -> list[float]:
        rng = random.Random(hashlib.sha256(f"{self.seed}:{text}".encode()).digest())
        vec = [rng.gauss(0.0, 1.0) for _ in range(dim or self.embedding_dim)]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [round(v / norm, 6) for v in vec]

    def _embed_one(self, req: ServerRequest, item: Any, where: str) -> tuple[list[float] | None, ServerResponse | None]:
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, dict) or not content.get("parts"):
            return None, self.error(req, 400, f"* {where}.content: content is not specified\n")
        dim = item.get("outputDimensionality")
        return self.embedding(_texts([content]), dim if isinstance(dim, int) else None), None

    def _model_info(self, model_id: str) -> dict[str, Any]:
        embed = "embedding" in model_id
        return {"name": f"models/{model_id}", "version": "001",
                "displayName": model_id.replace("-", " ").title(),
                "description": "A simulated model served by ipfs-accelerate.",
                "inputTokenLimit": self.input_token_limit,
                "outputTokenLimit": 0 if embed else 8192,
                "supportedGenerationMethods": (["embedContent", "batchEmbedContents"] if embed else
                                               ["generateContent", "countTokens"]),
                **({} if embed else {"temperature": 1.0, "topP": 0.95, "topK": 40,
                                     "maxTemperature": 2.0})}

    # ------------------------------------------------------------------ routes
    @route("POST", "/v1beta/models/{model}:generateContent")
    def generate_content(self, req: ServerRequest, model: str) -> ServerResponse:
        body, failure = self._body(req, "GenerateContentRequest")
        failure = failure or self._check_contents(req, body or {})
        if failure is not None:
            return failure
        assert body is not None
        return ServerResponse.json(self.generate(model, body))

    @route("POST", "/v1beta/models/{model}:streamGenerateContent")
    def stream_generate_content(self, req: ServerRequest, model: str) -> ServerResponse:
        body, failure = self._body(req, "GenerateContentRequest")
        failure = failure or self._check_contents(req, body or {})
        if failure is not None:
            return failure
        assert body is not None
        chunks = self.stream_chunks(self.generate(model, body))
        if req.arg("alt") == "sse":
            return ServerResponse.stream(self.sse(chunks))
        return ServerResponse.json(chunks)

    @route("POST", "/v1beta/models/{model}:embedContent")
    def embed_content(self, req: ServerRequest, model: str) -> ServerResponse:
        body, failure = self._body(req, "EmbedContentRequest")
        if failure is not None:
            return failure
        assert body is not None
        vec, failure = self._embed_one(req, body, "EmbedContentRequest")
        if failure is not None:
            return failure
        return ServerResponse.json({"embedding": {"values": vec}})

    @route("POST", "/v1beta/models/{model}:batchEmbedContents")
    def batch_embed_contents(self, req: ServerRequest, model: str) -> ServerResponse:
        body, failure = self._body(req, "BatchEmbedContentsRequest")
        if failure is not None:
            return failure
        assert body is not None
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            return self.error(req, 400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
        if len(items) > 100:
            return self.error(req, 400, "* BatchEmbedContentsRequest.requests: at most 100 requests "
                                        "can be in one batch\n")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or item.get("model") != f"models/{model}":
                return self.error(req, 400, f"* BatchEmbedContentsRequest.requests[{i}].model: the "
                                            "model of every request must match the model in the URL\n")
            vec, failure = self._embed_one(req, item, f"BatchEmbedContentsRequest.requests[{i}]")
            if failure is not None:
                return failure
            out.append({"values": vec})
        return ServerResponse.json({"embeddings": out})

    @route("POST", "/v1beta/models/{model}:countTokens")
    def count_tokens(self, req: ServerRequest, model: str) -> ServerResponse:
        body, failure = self._body(req, "CountTokensRequest")
        if failure is not None:
            return failure
        assert body is not None
        if "contents" in body and "generateContentRequest" in body:
            return self.error(req, 400, "* CountTokensRequest: contents and generateContentRequest "
                                        "are mutually exclusive\n")
        inner = body.get("generateContentRequest") if "generateContentRequest" in body else body
        failure = self._check_contents(req, inner if isinstance(inner, dict) else {})
        if failure is not None:
            return failure
        return ServerResponse.json({"totalTokens": self.prompt_tokens(inner)})

    @route("GET", "/v1beta/models")
    def list_models(self, req: ServerRequest) -> ServerResponse:
        failure = self._auth(req)
        if failure is not None:
            return failure
        try:
            size = max(1, min(1000, int(req.arg("pageSize", "50") or 50)))
            start = int(req.arg("pageToken", "0") or 0)
        except ValueError:
            return self.error(req, 400, "Invalid value at 'page_size' or 'page_token'")
        page = self.models[start:start + size]
        body: dict[str, Any] = {"models": [self._model_info(m) for m in page]}
        if start + size < len(self.models):
            body["nextPageToken"] = str(start + size)
        return ServerResponse.json(body)

    @route("GET", "/v1beta/models/{model}")
    def get_model(self, req: ServerRequest, model: str) -> ServerResponse:
        failure = self._auth(req)
        if failure is not None:
            return failure
        if model not in self.models:
            return self.error(req, 404, f"models/{model} is not found for API version v1beta, or is "
                                        "not supported for generateContent. Call ListModels to see "
                                        "the list of available models and their supported methods.")
        return ServerResponse.json(self._model_info(model))
