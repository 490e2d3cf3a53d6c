"""The OpenAI REST API, server side: answers like api.openai.com, deterministically."""

from __future__ import annotations

import hashlib
from typing import Any, Collection, Sequence

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, format_duration

#: The moderation categories the API reports on (part of the response shape).
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)

#: A typical key's quota, for tests that want the rate-limit headers on every answer.
EXAMPLE_LIMITS = RateLimitInfo(limit_requests=500, remaining_requests=499, reset_requests=0.12,
                               limit_tokens=200_000, remaining_tokens=199_000, reset_tokens=0.3)


class OpenAIServer(ProtocolServer):
    """Routes under ``/v1`` as on api.openai.com.

    Every answer carries ``x-request-id``, ``openai-version`` and ``openai-processing-ms``;
    with ``limits`` (e.g. :data:`EXAMPLE_LIMITS`) also fixed ``x-ratelimit-*`` headers.  By
    default none: the simulator adds the headers of the quota it enforces, and fixed fake
    ones would make clients throttle themselves to a quota nobody set.  A missing bearer token is a 401; a
    key in ``bad_keys`` is a 401 ``invalid_api_key`` echoing a masked fragment of the key,
    as the real API does.  Moderation flags ``violence`` for texts containing "attack".
    """

    name = "openai"

    def __init__(self, seed: int = 0, models: Sequence[str] = ("gpt-4o-mini", "text-embedding-3-small",
                                                               "omni-moderation-latest"),
                 *, bad_keys: Collection[str] = (), limits: RateLimitInfo | None = None,
                 context_window: int = 8192) -> None:
        super().__init__(seed)
        self.seed = seed
        self.compat = ocs.CompatResponder(models, seed=seed, owned_by="system",
                                         context_window=context_window)
        self.bad_keys = set(bad_keys)
        self.limits = limits
        self._count = 0

    # -- common --------------------------------------------------------------------
    def handle(self, req: ServerRequest) -> ServerResponse:
        denied = self._authenticate(req)
        resp = denied if denied is not None else super().handle(req)
        if self.limits is not None and resp.status != 429:
            for k, v in self.rate_limit_headers(self.limits).items():
                resp.headers.setdefault(k, v)
        return self._stamp(req, resp)

    def _stamp(self, req: ServerRequest, resp: ServerResponse) -> ServerResponse:
        """The meta headers every answer (errors and 429s included) carries."""
        self._count += 1
        rid = "req_" + hashlib.sha256(f"{self.seed}:{self._count}:{req.path}".encode()).hexdigest()[:32]
        resp.headers.setdefault("x-request-id", rid)
        resp.headers.setdefault("openai-version", "2020-10-01")
        resp.headers.setdefault("openai-processing-ms", "12")
        return resp

    def _authenticate(self, req: ServerRequest) -> ServerResponse | None:
        key = self.key_of(req)
        if not key:
            return self.error(req, 401, "You didn't provide an API key. You need to provide your API "
                              "key in an Authorization header using Bearer auth (i.e. Authorization: "
                              "Bearer YOUR_KEY).")
        if key in self.bad_keys:
            masked = key[:3] + "*" * 4 + key[-4:]
            return ServerResponse.json(ocs.render_error(
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                "invalid_api_key"), 401)
        return None

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        code = "rate_limit_exceeded" if status == 429 else None
        if status >= 500:
            message = message or "The server had an error while processing your request. Sorry about that!"
        return self._stamp(req, ServerResponse.json(
            ocs.render_error(message, ocs.error_type_for_status(status), code), status))

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        return ocs.ratelimit_headers(info)

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        """A 429 as OpenAI sends it: which limit (requests or tokens), the wait, headers."""
        tokens = info.remaining_tokens is not None and info.remaining_tokens <= 0
        kind, unit = ("tokens", "TPM") if tokens else ("requests", "RPM")
        limit = info.limit_tokens if tokens else info.limit_requests
        wait = info.retry_after if info.retry_after is not None else (
            info.reset_tokens if tokens else info.reset_requests) or 1.0
        try:
            model = (req.json() or {}).get("model", "the model")
        except ValueError:
            model = "the model"
        message = (f"Rate limit reached for {model} in organization org-simulated on {kind} per min "
                   f"({unit}): Limit {int(limit or 0)}, Used {int(limit or 0)}, Requested 1. Please "
                   f"try again in {format_duration(wait)}. "
                   "Visit https://platform.openai.com/account/rate-limits to learn more.")
        headers = {**self.rate_limit_headers(info), **ocs.retry_after_headers(wait)}
        return self._stamp(req, ServerResponse.json(
            ocs.render_error(message, kind, "rate_limit_exceeded"), 429, headers))

    def insufficient_quota(self, req: ServerRequest) -> ServerResponse:
        """The 429 of a key that is out of credit (not a rate limit: waiting does not help)."""
        return self._stamp(req, ServerResponse.json(ocs.render_error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota", "insufficient_quota"), 429))

    # -- routes --------------------------------------------------------------------
    @route("POST", "/v1/chat/completions")
    def chat(self, req: ServerRequest) -> ServerResponse:
        return self.compat.chat(req, extra={"system_fingerprint": "fp_simulated",
                                            "service_tier": "default"})

    @route("POST", "/v1/completions")
    def completions(self, req: ServerRequest) -> ServerResponse:
        return self.compat.completions(req)

    @route("POST", "/v1/embeddings")
    def embeddings(self, req: ServerRequest) -> ServerResponse:
        return self.compat.embeddings(req)

    @route("GET", "/v1/models")
    def models(self, req: ServerRequest) -> ServerResponse:
        return self.compat.models(req)

    @route("GET", "/v1/models/{model}")
    def model(self, req: ServerRequest, model: str) -> ServerResponse:
        return self.compat.model(req, model)

    @route("POST", "/v1/moderations")
    def moderations(self, req: ServerRequest) -> ServerResponse:
        try:
            body = req.json()
        except ValueError:
            return self.error(req, 400, "We could not parse the JSON body of your request.")
        value = body.get("input") if isinstance(body, dict) else None
        if value in (None, "", []):
            return ServerResponse.json(ocs.render_error("'input' is a required property",
                                                       param="input"), 400)
        texts = [value] if isinstance(value, str) else [
            v if isinstance(v, str) else str(v.get("text", "")) for v in value]
        results = [self._moderate(t) for t in texts]
        mid = "modr-" + hashlib.sha256(f"{self.seed}:{texts}".encode()).hexdigest()[:24]
        return ServerResponse.json({"id": mid, "model": body.get("model") or "omni-moderation-latest",
                                    "results": results})

    @staticmethod
    def _moderate(text: str) -> dict[str, Any]:
        violent = "attack" in text.lower()
        categories = {c: (violent and c == "violence") for c in MODERATION_CATEGORIES}
        scores = {c: (0.91 if categories[c] else 0.0001) for c in MODERATION_CATEGORIES}
        return {"flagged": violent, "categories": categories, "category_scores": scores,
                "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES}}
