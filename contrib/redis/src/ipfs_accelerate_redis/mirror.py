"""The last limiter state this process read from Redis, translated to its own clock.

Every script call returns the bucket state at the server's ``TIME``; the mirror records it
with the local monotonic time of the call, so ``wait_time`` and ``headroom`` can be
answered without a round trip.  The mirror may be optimistic (other processes consumed
since); ``acquire`` is always decided by the server, and a refused acquire refreshes it.
"""

from __future__ import annotations

from typing import Sequence

_EPS = 1e-9
#: Added to a positive wait: the server decides on its own clock, so waking a hair late
#: beats a refused acquire and a second round trip.
WAKE_MARGIN = 1e-4


def _f(v: bytes | str | int) -> float | None:
    if isinstance(v, int):
        return float(v)
    if isinstance(v, bytes):
        v = v.decode()
    return float(v) if v != "" else None


def _bucket_wait(rate: float, cap: float, level: float, cost: float) -> float:
    need = min(cost, cap)
    if level >= need - _EPS * max(1.0, abs(need)):
        return 0.0
    return (need - level) / rate


class LimiterMirror:
    __slots__ = ("local_t", "server_now", "rr", "rc", "rl", "tr", "tc", "tl", "cooldown_until",
                 "n429", "learned", "result", "peak_remaining")

    def __init__(self, local_t: float, reply: Sequence[bytes | str | int]) -> None:
        self.local_t = local_t
        vals = [_f(v) for v in reply]
        (self.server_now, self.rr, self.rc, self.rl, self.tr, self.tc, self.tl,
         self.cooldown_until) = vals[:8]
        self.n429 = int(vals[8] or 0)
        self.learned = bool(vals[9])
        self.result = vals[10]
        self.peak_remaining = vals[11] if len(vals) > 11 and vals[11] is not None else -1.0

    def _elapsed(self, now: float) -> float:
        return max(0.0, now - self.local_t)

    def request_level(self, now: float) -> float | None:
        if self.rr is None:
            return None
        return min(self.rc, self.rl + self._elapsed(now) * self.rr) if self.rl < self.rc else self.rl

    def token_level(self, now: float) -> float | None:
        if self.tr is None:
            return None
        return min(self.tc, self.tl + self._elapsed(now) * self.tr) if self.tl < self.tc else self.tl

    def cooldown(self, now: float) -> float:
        return max(0.0, (self.cooldown_until or 0.0) - self.server_now - self._elapsed(now))

    def wait(self, tokens: float, now: float) -> float:
        w = self.cooldown(now)
        rl = self.request_level(now)
        if rl is not None:
            w = max(w, _bucket_wait(self.rr, self.rc, rl, 1.0))
        tl = self.token_level(now)
        if tl is not None:  # debt holds back even 0-token requests (as the core does)
            w = max(w, _bucket_wait(self.tr, self.tc, tl, max(0.0, tokens)))
        return w + WAKE_MARGIN if w > 0 else 0.0
