"""Rate-limit and retry hints read from response headers.

Every provider spells these a little differently; the parsers here turn them into one
:class:`RateLimitInfo` that the core limiter learns from.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Mapping

import attrs


@attrs.frozen
class RateLimitInfo:
    """What a response said about its key's quota.  ``None`` means "not said"."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests: float | None = None  # seconds until the request window resets
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None
    request_window: float = 60.0  # the request limit is per this many seconds
    token_window: float = 60.0
    retry_after: float | None = None
    #: How far a reset figure may be from the truth (seconds): half a millisecond for
    #: OpenAI-style durations rounded to the ms, 1 s for Anthropic's RFC 3339 instants.
    #: The limiter widens its rate bounds by this.
    reset_resolution: float = 0.0005

    def is_empty(self) -> bool:
        return all(v is None for v in (self.limit_requests, self.remaining_requests,
                                       self.limit_tokens, self.remaining_tokens, self.retry_after))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str | None) -> float | None:
    """Parse OpenAI/Groq-style durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"2m59.56s"``,
    ``"1h2m"``; a bare number is seconds.  Returns seconds, or None if unparseable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            return None
        n, unit = float(m.group(1)), m.group(2)
        total += n * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        pos = m.end()
    return total if pos == len(value) and pos else None


def _num(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _get(headers: Mapping[str, str], name: str) -> str | None:
    # requests' CaseInsensitiveDict is case-insensitive; plain dicts get a fallback scan.
    v = headers.get(name)
    if v is None and not hasattr(headers, "lower_items"):
        lname = name.lower()
        for k, val in headers.items():
            if k.lower() == lname:
                return val
    return v


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    ms = _num(_get(headers, "retry-after-ms"))
    if ms is not None and ms >= 0:
        return ms / 1000.0
    value = _get(headers, "retry-after")
    if value is None:
        return None
    secs = _num(value)
    if secs is not None:
        return max(0.0, secs)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    """The ``x-should-retry`` hint: True, False, or None when absent."""
    value = _get(headers, "x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def parse_openai_headers(headers: Mapping[str, str], request_window: float = 60.0) -> RateLimitInfo:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (OpenAI, Groq, many
    OpenAI-compatible servers).  Groq's request limit is per day: pass ``request_window=86400``."""
    return RateLimitInfo(
        limit_requests=_num(_get(headers, "x-ratelimit-limit-requests")),
        remaining_requests=_num(_get(headers, "x-ratelimit-remaining-requests")),
        reset_requests=parse_duration(_get(headers, "x-ratelimit-reset-requests")),
        limit_tokens=_num(_get(headers, "x-ratelimit-limit-tokens")),
        remaining_tokens=_num(_get(headers, "x-ratelimit-remaining-tokens")),
        reset_tokens=parse_duration(_get(headers, "x-ratelimit-reset-tokens")),
        request_window=request_window,
        retry_after=parse_retry_after(headers),
    )


def _until_rfc3339(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_anthropic_headers(headers: Mapping[str, str], now: float | None = None) -> RateLimitInfo:
    """``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (reset is RFC 3339)."""
    return RateLimitInfo(
        limit_requests=_num(_get(headers, "anthropic-ratelimit-requests-limit")),
        remaining_requests=_num(_get(headers, "anthropic-ratelimit-requests-remaining")),
        reset_requests=_until_rfc3339(_get(headers, "anthropic-ratelimit-requests-reset"), now),
        limit_tokens=_num(_get(headers, "anthropic-ratelimit-tokens-limit")),
        remaining_tokens=_num(_get(headers, "anthropic-ratelimit-tokens-remaining")),
        reset_tokens=_until_rfc3339(_get(headers, "anthropic-ratelimit-tokens-reset"), now),
        retry_after=parse_retry_after(headers),
        reset_resolution=1.0,
    )


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` in OpenAI's style (``"1m30.5s"``, ``"20ms"``)."""
    if seconds < 1:
        return f"{int(round(seconds * 1000))}ms"
    m, s = divmod(seconds, 60.0)
    s_txt = f"{s:.3f}".rstrip("0").rstrip(".")
    return f"{int(m)}m{s_txt}s" if m else f"{s_txt}s"
