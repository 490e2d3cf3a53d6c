"""Per-key rate limiting: token buckets that learn a key's real quota.

A provider refuses (429) what exceeds a key's requests-per-minute or tokens-per-minute
quota.  Being refused costs a round trip and often a penalty, so the pipeline asks the
key's :class:`KeyLimiter` first and keeps the request queued until it may be sent.

Not thread-safe: the pipeline calls these under its own lock.  ``now`` is passed in by
the caller (monotonic seconds); a ``now`` earlier than a previous one counts as no time
elapsed.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError

__all__ = ["TokenBucket", "KeyLimiter"]

#: Relative tolerance for "the bucket holds enough": without it, float rounding can make
#: ``wait_time`` answer 1e-17 s forever after a caller slept exactly the time it was told.
_EPS = 1e-9

#: Adaptive cooldown after a 429 without a retry-after hint: 1 s, 2 s, 4 s ... capped.
BACKOFF_429_BASE = 1.0
BACKOFF_429_MAX = 60.0


def _enough(level: float, need: float) -> bool:
    return level >= need - _EPS * max(1.0, abs(need))


def _decayed(bucket: TokenBucket, amount: float, now: float, since: float | None) -> float:
    """What a refund of ``amount`` taken at ``since`` is still worth (see release_unsent)."""
    if since is None:
        return amount
    return max(0.0, amount - bucket.rate * max(0.0, now - since))


class TokenBucket:
    """A continuously refilling bucket: ``rate`` units per second up to ``capacity``.

    ``level`` may go negative (debt) after :meth:`take` or a cost larger than the
    capacity; it must then refill past zero before anything else is admitted.
    """

    __slots__ = ("rate", "capacity", "_level", "_stamp")

    def __init__(self, rate: float, capacity: float, now: float, level: float | None = None) -> None:
        self._check(rate, capacity)
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._level = self.capacity if level is None else min(float(level), self.capacity)
        self._stamp = now

    @staticmethod
    def _check(rate: float, capacity: float) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ConfigError("rate", f"must be a finite number > 0, got {rate!r}")
        if not capacity > 0 or math.isinf(capacity):
            raise ConfigError("capacity", f"must be a finite number > 0, got {capacity!r}")

    def _refill(self, now: float) -> float:
        if now > self._stamp:
            if self._level < self.capacity:
                self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
            self._stamp = now
        return self._level

    def level(self, now: float) -> float:
        return self._refill(now)

    def _need(self, cost: float) -> float:
        # A cost above capacity could never be met; admit it once the bucket is full.
        return min(cost, self.capacity)

    def try_take(self, cost: float, now: float) -> bool:
        """Take ``cost`` if available now (see :meth:`wait_time`); else take nothing."""
        if _enough(self._refill(now), self._need(cost)):
            self._level -= cost
            return True
        return False

    def take(self, cost: float, now: float) -> None:
        """Take ``cost`` unconditionally; the level may go negative (debt)."""
        self._refill(now)
        self._level -= cost

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` may be taken: 0.0 if now.  A cost above the capacity
        waits only until the bucket is full (then drives it into debt)."""
        level = self._refill(now)
        need = self._need(cost)
        if _enough(level, need):
            return 0.0
        # Round the moment up so that refilling at exactly ``now + wait`` (the caller's
        # float arithmetic, at any magnitude of ``now``) does reach ``need``.
        target = now + (need - level) / self.rate
        while not _enough(level + (target - now) * self.rate, need):
            target = math.nextafter(target, math.inf)
        return target - now

    def refund(self, amount: float, now: float) -> None:
        """Give back ``amount`` (never above the capacity)."""
        self._refill(now)
        self._level = min(self.capacity, self._level + amount)

    def set_level(self, level: float, now: float) -> None:
        """Force the level (capped at the capacity), e.g. from a server's ``remaining``."""
        self._refill(now)
        self._level = min(self.capacity, float(level))

    def reconfigure(self, rate: float, capacity: float, now: float) -> None:
        """Change rate and capacity, keeping what has accrued (capped at the new capacity)."""
        self._check(rate, capacity)
        self._refill(now)
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._level = min(self._level, self.capacity)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, capacity={self.capacity}, level={self._level})"


class KeyLimiter:
    """Per-key admission: a request bucket (requests/min) and a token bucket (tokens/min).

    Unknown limits mean unlimited until learned.  Learns from response headers
    (:meth:`observe`) and from 429s (:meth:`observe_429`) so keys are used up to their
    quota without being refused.

    Bucket shapes (a deliberate choice):

    * configured requests/min ``R``: rate ``R/60`` per second, capacity ``burst`` or, by
      default, ``max(1, R/60)`` -- one second's worth.  Requests are paced evenly instead
      of a minute's quota being fired in one burst that trips the provider's own
      short-window enforcement; in any window of ``T`` seconds at most
      ``capacity + R*T/60`` requests are admitted.
    * configured tokens/min ``M``: rate ``M/60``, capacity ``M`` (one minute's worth),
      since one request may legitimately cost a large share of the minute's tokens.
    * learned from headers (no configured value): rate ``limit/window``; capacity
      ``limit`` for tokens, and for requests the configured ``burst`` or else the most
      ``remaining`` ever reported plus one (a server enforcing a minute's quota in short
      bursts shows it by never reporting more).  Configured values always win; headers
      still lower the current level (``remaining``) and start cooldowns (until the reset,
      or one refill step when that is sooner).
    """

    def __init__(self, now: float, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, burst: float | None = None) -> None:
        for name, value in (("requests_per_minute", requests_per_minute),
                            ("tokens_per_minute", tokens_per_minute), ("burst", burst)):
            if value is not None and (not value > 0 or math.isinf(value)):
                raise ConfigError(name, f"must be a finite number > 0, got {value!r}")
        self._cfg_rpm = requests_per_minute
        self._cfg_tpm = tokens_per_minute
        self._burst = burst
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None
        self._rpm: float | None = None
        self._tpm: float | None = None
        if requests_per_minute is not None:
            cap = burst if burst is not None else max(1.0, requests_per_minute / 60.0)
            self._requests = TokenBucket(requests_per_minute / 60.0, cap, now)
            self._rpm = float(requests_per_minute)
        if tokens_per_minute is not None:
            self._tokens = TokenBucket(tokens_per_minute / 60.0, tokens_per_minute, now)
            self._tpm = float(tokens_per_minute)
        self._cooldown_until = -math.inf
        self._consecutive_429 = 0
        self._learned = False
        # The most requests a response ever said were left: a server's bucket holds at
        # least that plus the one just spent, and a per-minute limit of 600 enforced as
        # 10/s with a burst of 3 never reports more than 2.
        self._peak_remaining = -1.0

    # -- admission --------------------------------------------------------------------

    def wait_time(self, tokens: float, now: float) -> float:
        """0.0 when a request costing ``tokens`` may be sent now, else the seconds until
        it may (a cooldown from a 429 or an exhausted window included).  A token bucket
        in debt (usage under-estimated) holds back even requests estimated at 0 tokens."""
        wait = 0.0
        if self._cooldown_until > now:
            wait = self._cooldown_until - now
            while now + wait < self._cooldown_until:  # float rounding: never wake early
                wait = math.nextafter(wait, math.inf)
        if self._requests is not None:
            wait = max(wait, self._requests.wait_time(1.0, now))
        if self._tokens is not None:
            wait = max(wait, self._tokens.wait_time(max(0.0, tokens), now))
        return wait

    def acquire(self, tokens: float, now: float) -> bool:
        """Take one request and ``tokens`` if :meth:`wait_time` is 0; else take nothing."""
        if self.wait_time(tokens, now) > 0.0:
            return False
        if self._requests is not None:
            self._requests.take(1.0, now)
        if self._tokens is not None and tokens > 0:
            self._tokens.take(tokens, now)
        return True

    def reconcile(self, estimated: float, actual: float, now: float, *,
                  acquired_at: float | None = None) -> None:
        """Fix the token bucket once the true usage is known: refund an over-estimate,
        or book the shortfall as debt.  See :meth:`release_unsent` for ``acquired_at``."""
        if self._tokens is None:
            return
        delta = estimated - actual
        if delta > 0:
            self._tokens.refund(_decayed(self._tokens, delta, now, acquired_at), now)
        elif delta < 0:
            self._tokens.take(-delta, now)

    def release_unsent(self, tokens: float, now: float, *,
                       acquired_at: float | None = None) -> None:
        """An acquired request was never sent (it expired or was cancelled): give back
        its request and its tokens.

        ``acquired_at`` (the ``now`` of the :meth:`acquire`) makes the refund exact: had
        the request never been acquired, the bucket might have hit its capacity since
        and lost that refill, so a refund is worth ``amount - rate * (now - acquired_at)``
        at most.  With it, the rate bound holds for the requests actually sent; without
        it the full amount is given back (capped at the capacity), which may let up to
        that much extra through in the window -- harmless when the release follows the
        acquire within milliseconds, as it does in the pipeline.
        """
        if self._requests is not None:
            self._requests.refund(_decayed(self._requests, 1.0, now, acquired_at), now)
        if self._tokens is not None and tokens > 0:
            self._tokens.refund(_decayed(self._tokens, tokens, now, acquired_at), now)

    # -- learning ---------------------------------------------------------------------

    def observe(self, info: Any, now: float) -> None:
        """Learn from a response's rate-limit headers (a ``RateLimitInfo``).

        Limits configured at construction win over learned ones.  The current level
        becomes ``min(own level, remaining)``; a ``remaining`` of 0 cools the key down
        until the window resets (``now + reset``).  ``retry_after`` is not read here:
        a 429 goes through :meth:`observe_429`.
        """
        burst = self._burst
        remaining = info.remaining_requests
        if remaining is not None and remaining > self._peak_remaining:
            self._peak_remaining = float(remaining)
        if burst is None and self._peak_remaining >= 0:
            burst = self._peak_remaining + 1.0
        self._requests, self._rpm = self._learn(
            self._requests, self._rpm, self._cfg_rpm is not None, burst,
            info.limit_requests, info.remaining_requests, info.reset_requests,
            info.request_window, now)
        self._tokens, self._tpm = self._learn(
            self._tokens, self._tpm, self._cfg_tpm is not None, None,
            info.limit_tokens, info.remaining_tokens, info.reset_tokens,
            info.token_window, now)

    def _learn(self, bucket: TokenBucket | None, per_minute: float | None, configured: bool,
               burst: float | None, limit: float | None, remaining: float | None,
               reset: float | None, window: float | None, now: float
               ) -> tuple[TokenBucket | None, float | None]:
        window = window if window and window > 0 else 60.0
        if not configured and limit is not None and limit > 0 and not math.isinf(limit):
            rate = limit / window
            capacity = min(burst, float(limit)) if burst is not None else float(limit)
            if bucket is None:
                start = None if remaining is None else max(0.0, remaining)
                bucket = TokenBucket(rate, capacity, now, start)
            else:
                bucket.reconfigure(rate, capacity, now)
            per_minute = rate * 60.0
            self._learned = True
        if bucket is not None and remaining is not None:
            current = bucket.level(now)
            if remaining < current:
                bucket.set_level(max(0.0, remaining), now)
        if remaining is not None and remaining <= 0 and reset is not None and reset > 0:
            # ``reset`` is when the window is whole again; on a continuously refilling
            # quota (OpenAI, Groq) the next request fits after one refill step.
            step = window / limit if limit else reset
            self._cooldown_until = max(self._cooldown_until, now + min(reset, step))
        return bucket, per_minute

    def observe_429(self, retry_after: float | None, now: float) -> None:
        """The provider said no: empty the request bucket and cool down until
        ``now + retry_after``, or without a hint for an adaptive 1 s, 2 s, 4 s ... (capped
        at 60 s) that grows with consecutive 429s until :meth:`observe_success`."""
        self._consecutive_429 += 1
        if retry_after is not None and retry_after >= 0:
            wait = float(retry_after)
        else:
            wait = min(BACKOFF_429_MAX,
                       BACKOFF_429_BASE * 2.0 ** min(self._consecutive_429 - 1, 64))
        self._cooldown_until = max(self._cooldown_until, now + wait)
        if self._requests is not None and self._requests.level(now) > 0:
            self._requests.set_level(0.0, now)

    def observe_success(self, now: float) -> None:
        """A request on this key succeeded: the adaptive 429 backoff starts over."""
        self._consecutive_429 = 0

    # -- inspection -------------------------------------------------------------------

    def cooldown(self, now: float) -> float:
        """Seconds of cooldown left (0.0 when none)."""
        return max(0.0, self._cooldown_until - now)

    def headroom(self, now: float) -> float:
        """0.0..1.0: the available share of the request bucket (1.0 when unlimited;
        0.0 while cooling down).  Strategies prefer keys with more."""
        if self._cooldown_until > now:
            return 0.0
        if self._requests is None:
            return 1.0
        return min(1.0, max(0.0, self._requests.level(now) / self._requests.capacity))

    @property
    def requests_per_minute(self) -> float | None:
        return self._rpm

    @property
    def tokens_per_minute(self) -> float | None:
        return self._tpm

    @property
    def learned(self) -> bool:
        return self._learned

    def snapshot(self, now: float) -> dict:
        return {
            "requests_per_minute": self._rpm,
            "tokens_per_minute": self._tpm,
            "request_level": None if self._requests is None else self._requests.level(now),
            "token_level": None if self._tokens is None else self._tokens.level(now),
            "cooldown": self.cooldown(now),
            "learned": self._learned,
        }
