"""Per-key quota as the simulator enforces it: requests/s with a burst, and tokens/min.

The answer is a :class:`~ipfs_accelerate_py.wire.ratelimit.RateLimitInfo` that the
protocol server turns into its provider's own headers (``x-ratelimit-*``,
``anthropic-ratelimit-*``, ...).  Limits are reported per minute, as providers do.
"""

from __future__ import annotations

import math

from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo


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
        return 0.0 if need <= 0 else need / self.rate

    def until_full(self) -> float:
        return (self.capacity - self.level) / self.rate


class KeyQuota:
    """The buckets of one (backend, key)."""

    __slots__ = ("requests", "tokens")

    def __init__(self, rps: float | None, burst: float | None, tpm: float | None, now: float) -> None:
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

    def info(self, retry_after: float | None, tokens_short: bool = False) -> RateLimitInfo:
        r, t = self.requests, self.tokens
        return RateLimitInfo(
            limit_requests=None if r is None else round(r.rate * 60.0),
            remaining_requests=None if r is None else max(0, math.floor(r.level)),
            reset_requests=None if r is None else r.until_full(),
            limit_tokens=None if t is None else round(t.capacity),
            remaining_tokens=None if t is None else (0 if tokens_short else max(0, math.floor(t.level))),
            reset_tokens=None if t is None else t.until_full(),
            retry_after=retry_after,
        )
