"""Anthropic's error body ``{"type": "error", "error": {"type", "message"}, "request_id"}``
mapped onto the core's closed set of error classes."""

from __future__ import annotations

import re
from typing import Any

from ipfs_accelerate_py.errors import (
    AuthError,
    ContextTooLong,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    RequestTimeout,
    TransientError,
)

#: Anthropic error ``type`` -> error class.  Overloaded (529) is the service being busy:
#: transient and retryable, unlike a 429 which is this key's quota.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "invalid_request_error": InvalidRequest,
    "authentication_error": AuthError,
    "permission_error": AuthError,
    "billing_error": AuthError,  # the key cannot be used until billing is fixed
    "not_found_error": NotFound,
    "request_too_large": InvalidRequest,
    "rate_limit_error": RateLimited,
    "api_error": TransientError,
    "overloaded_error": TransientError,
    "timeout_error": RequestTimeout,
}

# "prompt is too long: 201234 tokens > 200000 maximum" and the max_tokens variant
# "input length and `max_tokens` exceed context limit: ...".
_CONTEXT = re.compile(r"prompt is too long|exceed(s|ed)? (the )?context (limit|window)", re.I)


def error_class(error_type: str | None, message: str) -> type[ProviderError] | None:
    """The class for an Anthropic error type (None when the type is unknown)."""
    cls = ERROR_TYPES.get(error_type or "")
    if cls is InvalidRequest and _CONTEXT.search(message or ""):
        return ContextTooLong
    return cls


def error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(type, message, request_id) from an Anthropic error body or stream ``error`` event."""
    if not isinstance(body, dict):
        return None, None, None
    err = body.get("error")
    request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    if isinstance(err, dict):
        etype = err.get("type")
        message = err.get("message")
        return (str(etype) if etype else None, str(message) if message else None, request_id)
    if isinstance(err, str):
        return None, err, request_id
    return None, None, request_id
