"""Google's error body ``{"error": {"code", "message", "status", "details": [...]}}`` mapped
onto the core's error classes, and the hints hidden in ``details``."""

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
from ipfs_accelerate_py.wire.ratelimit import parse_duration

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

#: google.rpc.Code names -> error class.
STATUS_CLASSES: dict[str, type[ProviderError]] = {
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAUTHENTICATED": AuthError,
    "PERMISSION_DENIED": AuthError,
    "INVALID_ARGUMENT": InvalidRequest,
    "FAILED_PRECONDITION": InvalidRequest,
    "OUT_OF_RANGE": InvalidRequest,
    "NOT_FOUND": NotFound,
    "UNAVAILABLE": TransientError,
    "INTERNAL": TransientError,
    "UNKNOWN": TransientError,
    "ABORTED": TransientError,
    "CANCELLED": TransientError,
    "DEADLINE_EXCEEDED": RequestTimeout,
}

#: ErrorInfo reasons that mean "this key is bad", sent by Google as a 400 INVALID_ARGUMENT.
KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})

#: finishReason values that mean the answer was withheld by a filter (any blockReason is).
FILTER_REASONS = frozenset({"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "RECITATION",
                            "IMAGE_SAFETY"})

# "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
_CONTEXT = re.compile(r"input token count.*exceeds the maximum|exceeds the maximum number of tokens",
                      re.I | re.S)


def error_fields(body: Any) -> tuple[str | None, str | None, list[Any]]:
    """(status, message, details) from a Google error body (or a stream's error chunk)."""
    if isinstance(body, list) and body:  # a JSON-array stream answers errors as [{"error": ...}]
        body = body[0]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, None, []
    details = err.get("details") if isinstance(err.get("details"), list) else []
    status = err.get("status")
    message = err.get("message")
    return (str(status) if status else None, str(message) if message else None, details)


def error_class(status: str | None, message: str, details: list[Any]) -> type[ProviderError] | None:
    cls = STATUS_CLASSES.get(status or "")
    reasons = {d.get("reason") for d in details if isinstance(d, dict) and d.get("@type") == ERROR_INFO}
    if reasons & KEY_REASONS:
        return AuthError
    if cls is InvalidRequest and _CONTEXT.search(message or ""):
        return ContextTooLong
    return cls


def retry_delay(details: list[Any]) -> float | None:
    """``RetryInfo.retryDelay`` ("13s", "0.5s") in seconds, if the error carries one."""
    for d in details:
        if isinstance(d, dict) and d.get("@type") == RETRY_INFO:
            delay = d.get("retryDelay")
            if isinstance(delay, dict):  # the proto form {"seconds": 13, "nanos": 0}
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            return parse_duration(str(delay)) if delay is not None else None
    return None
