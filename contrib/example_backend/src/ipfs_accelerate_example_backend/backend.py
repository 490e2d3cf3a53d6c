"""The client side of the Lingo protocol: build requests, parse answers, classify errors.

Queueing, rate limits, retries, the breaker, key selection and stats come from the
pipeline; this class only knows what Lingo's wire looks like.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import requests

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import (
    AuthError,
    ContentFiltered,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    TransientError,
    error_for_status,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_retry_after


#: Lingo's ``fault.kind`` -> the pipeline's error class.  Anything else: by HTTP status.
FAULT_CLASSES: dict[str, type[ProviderError]] = {
    "bad_key": AuthError,
    "quota_exceeded": RateLimited,
    "bad_request": InvalidRequest,
    "unknown_language": InvalidRequest,
    "text_too_long": ContextTooLong,
    "blocked_content": ContentFiltered,
    "not_found": NotFound,
    "overloaded": TransientError,
    "internal": TransientError,
}


class LingoBackend(Backend):
    """Lingo: ``translate`` (one text or a list) and ``languages``.

    Single-text ``translate`` requests queued close together with the same languages are
    sent as one call (Lingo takes up to 50 texts per call).
    """

    name = "lingo"
    default_base_url = "https://api.lingo.example/v1"
    operations = {
        "translate": "translate one text or a list of texts (payload: text, target, source?)",
        "languages": "list the languages the service speaks",
    }
    env_keys = ("LINGO_API_KEY",)
    env_base_url = ("LINGO_BASE_URL",)
    request_id_header = "Lingo-Request-Id"
    response_id_header = "lingo-request-id"
    #: The header carrying the key: blanked after sending, redacted wherever shown.
    secret_headers = frozenset({"x-lingo-key"})

    # -- authentication: Lingo does not use bearer tokens ------------------------------
    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        secret = key.reveal() if key is not None else None
        return {"X-Lingo-Key": secret} if secret else {}

    def check(self, request: Request) -> None:
        """Refuse a translate request that could never succeed before it is queued."""
        super().check(request)
        if request.operation == "translate":
            p = request.payload
            if not p.get("target"):
                raise InvalidRequest("translate needs a 'target' language", backend=self.name)
            text = p.get("text")
            if not isinstance(text, str) and not (
                    isinstance(text, (list, tuple)) and text and all(isinstance(t, str) for t in text)):
                raise InvalidRequest("translate needs 'text': a string or a list of strings",
                                     backend=self.name)

    # -- translate ---------------------------------------------------------------------
    def build_translate(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        text = p["text"]
        body: dict[str, Any] = {"q": [text] if isinstance(text, str) else list(text),
                                "target": p["target"]}
        if p.get("source"):
            body["source"] = p["source"]
        return HttpRequest("POST", self.url("translate"), json=body)

    def parse_translate(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        try:
            texts = [t["text"] for t in body["translations"]]
        except (KeyError, TypeError):
            raise self.make_error(TransientError, "translate answer without 'translations'",
                                  response, code="malformed_response") from None
        single = isinstance(request.payload["text"], str)
        return Result(text=texts[0] if single and texts else None, data=texts, raw=body,
                      provider_request_id=self.provider_request_id(response))

    # -- languages: the list comes from the service, never from this plugin -----------
    def build_languages(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("languages"))

    def parse_languages(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict) or not isinstance(body.get("languages"), list):
            raise self.make_error(TransientError, "languages answer without 'languages'",
                                  response, code="malformed_response")
        return Result(data=body["languages"], raw=body,
                      provider_request_id=self.provider_request_id(response))

    # -- errors and quota --------------------------------------------------------------
    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        f = body.get("fault") if isinstance(body, dict) else None
        if not isinstance(f, dict):
            # Not Lingo's own answer (a proxy's HTML page, an empty body): go by status.
            message, _ = self.error_message(response)
            return self.make_error(error_for_status(response.status_code), message, response)
        kind = str(f.get("kind") or "")
        cls = FAULT_CLASSES.get(kind) or error_for_status(response.status_code)
        retry_ms = f.get("retry_in_ms")
        retry_after = retry_ms / 1000.0 if isinstance(retry_ms, (int, float)) else None
        return self.make_error(cls, str(f.get("detail") or kind or "Lingo error"), response,
                               code=kind or None, retry_after=retry_after)

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        h = response.headers
        limit, remaining = _num(h.get("lingo-quota-limit")), _num(h.get("lingo-quota-remaining"))
        if limit is None and remaining is None:
            return None
        return RateLimitInfo(limit_requests=limit, remaining_requests=remaining,
                             reset_requests=_num(h.get("lingo-quota-reset")),
                             request_window=_num(h.get("lingo-quota-window")) or 60.0,
                             retry_after=parse_retry_after(h))

    # -- batching: coalesce single-text translations -----------------------------------
    def batch_key(self, request: Request) -> Hashable | None:
        p = request.payload
        if request.operation != "translate" or not isinstance(p.get("text"), str):
            return None
        return ("translate", p.get("source"), p.get("target"))

    def max_batch_size(self, request: Request) -> int:
        return int(self.option("max_batch_size", 16))

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0]
        return first.evolve(payload={**first.payload, "text": [r.payload["text"] for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        texts = result.data or []
        if len(texts) != len(requests):
            raise TransientError(f"Lingo answered {len(texts)} translations for "
                                 f"{len(requests)} texts", backend=self.name)
        return [Result(text=t, data=[t], raw=result.raw,
                       provider_request_id=result.provider_request_id) for t in texts]


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
