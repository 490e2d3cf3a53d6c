"""Per-key quota as the simulator enforces it: exact token buckets, requests/s with a
burst, and tokens/min.

The answer is a :class:`~ipfs_accelerate_py.wire.ratelimit.RateLimitInfo` that the
protocol server turns into its provider's own headers (``x-ratelimit-*``,
``anthropic-ratelimit-*``, ...).  Whatever the style, ``remaining`` is the bucket's level
rounded down and ``reset`` the time until it is full again (as OpenAI and Anthropic
document them); the styles differ in what ``limit`` says (:data:`HEADER_STYLES`).
"""

from __future__ import annotations

import math

from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

#: What the request ``limit`` header states, per style (tokens are always per minute):
#: ``per_minute``: requests per minute (OpenAI, Anthropic); ``bucket``: the bucket's
#: capacity (time-to-full reset); ``per_second``: requests per second; ``window_10s``:
#: requests per 10 s; ``daily``: requests per day (Groq), beside a per-minute token limit.
HEADER_STYLES = {"per_minute": 60.0, "bucket": None, "per_second": 1.0, "window_10s": 10.0,
                 "daily": 86_400.0}


class Bucket:
    """A token bucket: ``rate`` per second, at most ``capacity``."""

    __slots__ = ("rate", "capacity", "level", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, now: float) -> float:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.level

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` is available (after :meth:`refill`)."""
        need = min(cost, self.capacity) - self.level
        # (float rounding: a client pacing at exactly this rate must not be refused for
        # arriving 1e-15 of a unit early)
        return 0.0 if need <= 1e-9 * max(1.0, cost) else need / self.rate

    def until_full(self) -> float:
        return (self.capacity - self.level) / self.rate


class KeyQuota:
    """The buckets of one (backend, key)."""

    __slots__ = ("requests", "tokens", "style")

    def __init__(self, rps: float | None, burst: float | None, tpm: float | None, now: float,
                 style: str = "per_minute") -> None:
        self.style = style
        self.requests = (Bucket(rps, burst if burst is not None else max(1.0, rps), now)
                         if rps else None)
        self.tokens = Bucket(tpm / 60.0, tpm, now) if tpm else None

    def admit(self, cost: float, now: float) -> tuple[bool, RateLimitInfo]:
        """Take one request costing ``cost`` tokens if both buckets allow it.  Returns
        (admitted, what the headers should say)."""
        wait_r = wait_t = 0.0
        if self.requests is not None:
            self.requests.refill(now)
            wait_r = self.requests.wait(1.0)
        if self.tokens is not None:
            self.tokens.refill(now)
            wait_t = self.tokens.wait(cost)
        ok = wait_r <= 0 and wait_t <= 0
        if ok:
            if self.requests is not None:
                self.requests.level -= 1.0
            if self.tokens is not None:
                self.tokens.level -= cost
        return ok, self.info(None if ok else max(wait_r, wait_t), tokens_short=wait_t > 0)

    def _request_limit(self, r: Bucket) -> float:
        window = HEADER_STYLES[self.style]
        # a window's limit is never below the burst it lets through
        return round(r.capacity if window is None else max(r.rate * window, r.capacity))

    def info(self, retry_after: float | None, tokens_short: bool = False) -> RateLimitInfo:
        r, t = self.requests, self.tokens
        return RateLimitInfo(
            limit_requests=None if r is None else self._request_limit(r),
            remaining_requests=None if r is None else max(0, math.floor(r.level)),
            reset_requests=None if r is None else r.until_full(),
            limit_tokens=None if t is None else round(t.capacity),
            remaining_tokens=None if t is None else (0 if tokens_short else max(0, math.floor(t.level))),
            reset_tokens=None if t is None else t.until_full(),
            retry_after=retry_after,
        )
