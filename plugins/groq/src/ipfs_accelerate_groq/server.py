"""Groq's OpenAI-compatible API, server side: answers like api.groq.com, deterministically."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

import attrs

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, format_duration

DAY = 86_400.0

#: A free-tier-like quota (requests per DAY, tokens per minute), for tests.
EXAMPLE_LIMITS = RateLimitInfo(limit_requests=14_400, remaining_requests=14_399,
                               reset_requests=6.0, limit_tokens=6_000, remaining_tokens=5_990,
                               reset_tokens=0.1, request_window=86_400.0)


class _GroqDialect(ocs.CompatResponder):
    """Groq's differences from the OpenAI shapes: ``n`` must be 1, and streams carry the
    request id and (on the last chunk) the usage in an ``x_groq`` object."""

    def check_chat(self, body: Mapping[str, Any]) -> Any:
        if int(body.get("n") or 1) != 1:
            return self.error(400, "'n' : number must be at most 1", param="n")
        if body.get("logprobs"):
            return self.error(400, "logprobs is not supported with this model", param="logprobs")
        return None

    def finish_stream(self, objects: list[dict[str, Any]], body: Mapping[str, Any],
                      usage: Mapping[str, int]) -> list[dict[str, Any]]:
        rid = "req_" + hashlib.sha256(repr(body).encode()).hexdigest()[:26]
        objects[0]["x_groq"] = {"id": rid}
        last = max(i for i, o in enumerate(objects) if o.get("choices"))
        objects[last]["x_groq"] = {"id": rid, "usage": {**usage, "queue_time": 0.01,
                                                       "prompt_time": 0.002, "completion_time": 0.01,
                                                       "total_time": 0.012}}
        return objects


class GroqServer(ProtocolServer):
    """Routes under ``/openai/v1`` as on api.groq.com: chat completions (plain and SSE),
    models.  Every answer carries ``x-request-id``; with ``limits`` (e.g.
    :data:`EXAMPLE_LIMITS`) also fixed ``x-ratelimit-*`` headers (requests per day, tokens
    per minute) -- by default none, the simulator adds those of the quota it enforces.  A
    missing or bad key is a 401 ``invalid_api_key``."""

    name = "groq"

    def __init__(self, seed: int = 0, models: Sequence[str] = ("llama-3.1-8b-instant",
                                                               "llama-3.3-70b-versatile"),
                 *, bad_keys: Sequence[str] = (), limits: RateLimitInfo | None = None,
                 context_window: int = 8192) -> None:
        super().__init__(seed)
        self.seed = seed
        self.compat = _GroqDialect(models, seed=seed, owned_by="Meta", context_window=context_window,
                                   model_fields={"active": True, "context_window": context_window,
                                                 "public_apps": None,
                                                 "max_completion_tokens": context_window})
        self.bad_keys = set(bad_keys)
        self.limits = limits
        self._count = 0

    def handle(self, req: ServerRequest) -> ServerResponse:
        key = self.key_of(req)
        if not key or key in self.bad_keys:
            resp = ServerResponse.json(
                ocs.render_error("Invalid API Key", "invalid_request_error", "invalid_api_key"), 401)
        else:
            resp = super().handle(req)
        if self.limits is not None and resp.status != 429:
            for k, v in self.rate_limit_headers(self.limits).items():
                resp.headers.setdefault(k, v)
        return self._stamp(req, resp)

    def _stamp(self, req: ServerRequest, resp: ServerResponse) -> ServerResponse:
        self._count += 1
        rid = "req_" + hashlib.sha256(f"{self.seed}:{self._count}:{req.path}".encode()).hexdigest()[:26]
        resp.headers.setdefault("x-request-id", rid)
        resp.headers.setdefault("x-groq-region", "sim")
        return resp

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        code = "rate_limit_exceeded" if status == 429 else None
        return self._stamp(req, ServerResponse.json(
            ocs.render_error(message, ocs.error_type_for_status(status), code), status))

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        """Groq's headers: the request quota is per day and refills continuously, so a
        quota given per another window (the simulator's per-minute one) is restated as the
        same rate per day, with ``reset`` the time until that daily bucket is full."""
        if info.limit_requests and info.request_window != DAY:
            daily = info.limit_requests * DAY / info.request_window
            remaining = info.remaining_requests if info.remaining_requests is not None else daily
            info = attrs.evolve(info, limit_requests=daily, request_window=DAY,
                                reset_requests=max(0.0, daily - remaining) * DAY / daily)
        return ocs.ratelimit_headers(info)

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        """Groq's 429: which limit was hit (requests per day or tokens per minute), the wait in
        the message and in ``retry-after`` (whole seconds), and the rate-limit headers."""
        tokens = info.remaining_tokens is not None and info.remaining_tokens <= 0
        kind, unit = ("tokens", "tokens per minute (TPM)") if tokens else ("requests",
                                                                           "requests per day (RPD)")
        limit = int((info.limit_tokens if tokens else info.limit_requests) or 0)
        wait = info.retry_after if info.retry_after is not None else (
            info.reset_tokens if tokens else info.reset_requests) or 1.0
        try:
            model = (req.json() or {}).get("model", "unknown")
        except ValueError:
            model = "unknown"
        message = (f"Rate limit reached for model `{model}` in organization `org_simulated` service "
                   f"tier `on_demand` on {unit}: Limit {limit}, Used {limit}, Requested 1. Please "
                   f"try again in {format_duration(wait)}.")
        headers = {**self.rate_limit_headers(info), **ocs.retry_after_headers(wait, with_ms=False)}
        return self._stamp(req, ServerResponse.json(
            ocs.render_error(message, kind, "rate_limit_exceeded"), 429, headers))

    @route("POST", "/openai/v1/chat/completions")
    def chat(self, req: ServerRequest) -> ServerResponse:
        rid = "req_" + hashlib.sha256(req.body).hexdigest()[:26]
        resp = self.compat.chat(req, extra={"system_fingerprint": "fp_simulated"})
        if isinstance(resp.body, bytes) and resp.status == 200:
            body = json.loads(resp.body)
            body["x_groq"] = {"id": rid}
            resp = ServerResponse.json(body, headers=resp.headers)
        return resp

    @route("GET", "/openai/v1/models")
    def models(self, req: ServerRequest) -> ServerResponse:
        return self.compat.models(req)

    @route("GET", "/openai/v1/models/{model:path}")
    def model(self, req: ServerRequest, model: str) -> ServerResponse:
        return self.compat.model(req, model)
