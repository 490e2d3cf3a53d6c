"""Retry decisions: whether to try a failed request again, and after how long.

This is the pipeline's only retry layer (urllib3's own retries are off), so every rule
lives here: the server's ``x-should-retry`` wins, attempts are capped, only retryable
classes are retried, the delay is full-jitter exponential backoff (never less than the
server's ``retry-after``), no retry is scheduled past the request's deadline, and a
per-backend :class:`RetryBudget` stops retry storms against a failing service.
"""

from __future__ import annotations

import random
import threading

import attrs

from .config import RetryPolicy
from .errors import ConfigError, ErrorClass, ProviderError

__all__ = ["RetryDecision", "RetryBudget", "backoff_delay", "capped_retry_after", "decide_retry"]


@attrs.frozen
class RetryDecision:
    """``retry``: try again; ``delay``: seconds to wait first; ``reason``: why (for logs
    and the final error when giving up)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def capped_retry_after(policy: RetryPolicy, value: float | None) -> float | None:
    """A server's ``retry-after`` as the pipeline uses it, for the retry and for the key's
    cooldown alike: within ``[0, max_retry_after]``; a value that is not a finite number
    (``nan``, garbage already parsed to None) or hints that are off give None."""
    if value is None or not policy.honor_retry_after:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if value != value:  # nan
        return None
    return min(max(0.0, value), policy.max_retry_after)


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Full-jitter backoff after ``attempt`` attempts (>= 1):
    ``uniform(0, min(max_delay, base_delay * multiplier ** (attempt - 1)))``, or the cap
    itself when jitter is off.  Full jitter spreads retries of many clients that failed
    together, so they do not return together."""
    attempt = max(1, attempt)
    try:
        cap = policy.base_delay * policy.multiplier ** (attempt - 1)
    except OverflowError:
        cap = policy.max_delay
    cap = min(policy.max_delay, cap)
    return rng.uniform(0.0, cap) if policy.jitter else cap


def decide_retry(policy: RetryPolicy, attempt: int, error: ProviderError, now: float,
                 deadline: float | None, rng: random.Random) -> RetryDecision:
    """Decide whether to retry after ``attempt`` attempts ended in ``error``.

    Rules, in order:

    1. ``error.should_retry is False`` (the server sent ``x-should-retry: false``): no.
    2. ``attempt >= policy.max_attempts``: no.
    3. the error's class is not in ``policy.retry_on`` and the server did not say
       ``x-should-retry: true``: no.
    4. delay = :func:`backoff_delay`; with ``honor_retry_after`` and a ``retry_after``
       hint, ``max(delay, min(retry_after, max_retry_after))``.
       Exception -- ``RATE_LIMITED``: the delay is 0.0.  A 429 is about the *key*, not
       the request: the pipeline applies the retry-after (or an adaptive cooldown) to
       that key's limiter (``KeyLimiter.observe_429``), and the request goes straight
       back to the queue, where it waits for any key with capacity -- another key may be
       free right now.
    5. ``now + delay >= deadline``: no (it would land past the deadline).

    The retry budget is not a rule here: over the budget the pipeline throttles a retry
    (delays it) instead of refusing it, with the backend's :class:`RetryBudget`.

    Consumes one ``rng`` draw only when jitter applies (not for RATE_LIMITED).
    """
    if error.should_retry is False:
        return RetryDecision(False, 0.0, "server said x-should-retry: false")
    if attempt >= policy.max_attempts:
        return RetryDecision(False, 0.0, f"gave up after {attempt} attempts")
    cls = error.error_class
    if cls not in policy.retry_on and error.should_retry is not True:
        return RetryDecision(False, 0.0, f"{ErrorClass(cls).value} is not retryable")
    if cls == ErrorClass.RATE_LIMITED:
        delay = 0.0
        reason = "rate limited: wait for a key with capacity"
    else:
        delay = backoff_delay(policy, attempt, rng)
        reason = f"{ErrorClass(cls).value}: backoff"
        hinted = capped_retry_after(policy, error.retry_after)
        if hinted is not None:
            if hinted > delay:
                delay = hinted
                reason = f"{ErrorClass(cls).value}: retry-after"
    if deadline is not None and now + delay >= deadline:
        return RetryDecision(False, delay, "retry would pass the deadline")
    return RetryDecision(True, delay, reason)


class RetryBudget:
    """Caps retries at a share of recent traffic, per backend.  Thread-safe.

    A retry is allowed while ``retries_in_window < ratio * requests_in_window +
    min_per_second * window``: a healthy service's occasional failures are always
    retried (the floor), but when everything fails, retries cannot multiply the load
    by more than ``1 + ratio``.  Counts live in 10 buckets across the window, so both
    calls are O(1) and old traffic ages out in steps of ``window / 10``.

    Call :meth:`record_request` once per request admitted (its first attempt), and
    :meth:`try_spend` before each retry.
    """

    BUCKETS = 10

    def __init__(self, ratio: float, min_per_second: float, window: float, now: float) -> None:
        if not ratio >= 0:
            raise ConfigError("ratio", f"must be >= 0, got {ratio!r}")
        if not min_per_second >= 0:
            raise ConfigError("min_per_second", f"must be >= 0, got {min_per_second!r}")
        if not window > 0:
            raise ConfigError("window", f"must be > 0, got {window!r}")
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.window = float(window)
        self._width = self.window / self.BUCKETS
        self._requests = [0] * self.BUCKETS
        self._retries = [0] * self.BUCKETS
        self._total_requests = 0
        self._total_retries = 0
        self._slot = self._slot_of(now)  # absolute index of the newest bucket
        self._lock = threading.Lock()

    def _slot_of(self, now: float) -> int:
        return int(now // self._width)

    def _advance(self, now: float) -> int:
        """Clear buckets that fell out of the window; return the current bucket index."""
        slot = self._slot_of(now)
        if slot > self._slot:
            steps = min(slot - self._slot, self.BUCKETS)
            for s in range(self._slot + 1, self._slot + 1 + steps):
                i = s % self.BUCKETS
                self._total_requests -= self._requests[i]
                self._total_retries -= self._retries[i]
                self._requests[i] = 0
                self._retries[i] = 0
            self._slot = slot
        # A ``now`` older than the newest bucket books into the newest bucket.
        return self._slot % self.BUCKETS

    def record_request(self, now: float) -> None:
        with self._lock:
            i = self._advance(now)
            self._requests[i] += 1
            self._total_requests += 1

    def try_spend(self, now: float) -> bool:
        """Book a retry if the budget allows one now."""
        with self._lock:
            i = self._advance(now)
            allowed = self.ratio * self._total_requests + self.min_per_second * self.window
            if self._total_retries < allowed:
                self._retries[i] += 1
                self._total_retries += 1
                return True
            return False

    def snapshot(self, now: float) -> dict:
        with self._lock:
            self._advance(now)
            return {"requests": self._total_requests, "retries": self._total_retries}
