"""The server side of the Lingo protocol: answers like the (made-up) service would.

Tests host it with ``ipfs_accelerate_sim.testing.LocalServer``; the simulator mounts it
under ``/lingo`` and applies rate limits through :meth:`LingoServer.rate_limited` and
:meth:`LingoServer.rate_limit_headers`.  Translations are deterministic (each word
reversed), which is all a client-side test needs.
"""

from __future__ import annotations

import math
from typing import Any

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

#: What the service says it speaks (the server's data, not a client-side catalogue).
LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "ja": "Japanese"}
#: Service limits: texts per call and characters per text.
MAX_TEXTS = 50
MAX_CHARS = 5000

#: The ``fault.kind`` the service uses for a bare HTTP status.
_KIND_FOR_STATUS = {400: "bad_request", 401: "bad_key", 403: "bad_key", 404: "not_found",
                    413: "text_too_long", 429: "quota_exceeded", 503: "overloaded"}


def fault(status: int, kind: str, detail: str, *, retry_in_ms: int | None = None,
          headers: dict[str, str] | None = None) -> ServerResponse:
    """Lingo's error body: ``{"fault": {"kind", "detail"[, "retry_in_ms"]}}``."""
    body: dict[str, Any] = {"kind": kind, "detail": detail}
    if retry_in_ms is not None:
        body["retry_in_ms"] = retry_in_ms
    return ServerResponse.json({"fault": body}, status, headers)


class LingoServer(ProtocolServer):
    name = "lingo"

    def _request_id(self) -> str:
        return "lg_%012x" % self.rng.getrandbits(48)

    def key_of(self, req: ServerRequest) -> str | None:
        return req.header("x-lingo-key")

    def _unauthorized(self, req: ServerRequest) -> ServerResponse | None:
        if not self.key_of(req):
            return fault(401, "bad_key", "missing X-Lingo-Key header")
        return None

    # -- routes ------------------------------------------------------------------------
    @route("POST", "/v1/translate")
    def translate(self, req: ServerRequest) -> ServerResponse:
        denied = self._unauthorized(req)
        if denied is not None:
            return denied
        try:
            body = req.json()
        except ValueError:
            return fault(400, "bad_request", "body is not JSON")
        texts = body.get("q") if isinstance(body, dict) else None
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return fault(400, "bad_request", "'q' must be a non-empty list of strings")
        if len(texts) > MAX_TEXTS:
            return fault(400, "bad_request", f"at most {MAX_TEXTS} texts per call")
        for i, text in enumerate(texts):
            if len(text) > MAX_CHARS:
                return fault(413, "text_too_long", f"q[{i}] has {len(text)} characters; "
                                                   f"the limit is {MAX_CHARS}")
        target, source = body.get("target"), body.get("source")
        for lang in (target, source):
            if lang is not None and lang not in LANGUAGES:
                return fault(400, "unknown_language", f"unknown language {lang!r}")
        if target is None:
            return fault(400, "bad_request", "'target' is required")
        out = [{"text": " ".join(w[::-1] for w in t.split(" ")), "detected_source": source or "en"}
               for t in texts]
        return ServerResponse.json(
            {"translations": out, "billed_characters": sum(len(t) for t in texts)},
            headers={"Lingo-Request-Id": self._request_id()})

    @route("GET", "/v1/languages")
    def languages(self, req: ServerRequest) -> ServerResponse:
        denied = self._unauthorized(req)
        if denied is not None:
            return denied
        return ServerResponse.json(
            {"languages": [{"code": c, "name": n} for c, n in LANGUAGES.items()]},
            headers={"Lingo-Request-Id": self._request_id()})

    # -- what the simulator and the contract tests use ----------------------------------
    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        kind = _KIND_FOR_STATUS.get(status, "internal" if status >= 500 else "bad_request")
        return fault(status, kind, message)

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        headers: dict[str, str] = {"Lingo-Quota-Window": f"{info.request_window:g}"}
        if info.limit_requests is not None:
            headers["Lingo-Quota-Limit"] = str(int(info.limit_requests))
        if info.remaining_requests is not None:
            headers["Lingo-Quota-Remaining"] = str(int(info.remaining_requests))
        if info.reset_requests is not None:
            headers["Lingo-Quota-Reset"] = f"{info.reset_requests:.3f}"
        return headers

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        """Lingo's 429: the exact wait in ``retry_in_ms``, and a whole-second Retry-After
        for generic HTTP clients."""
        wait = info.retry_after if info.retry_after is not None else 1.0
        headers = self.rate_limit_headers(info)
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return fault(429, "quota_exceeded", "request quota exceeded for this key",
                     retry_in_ms=int(round(wait * 1000)), headers=headers)
