"""The refill rate a server's ``remaining`` proves over time, whatever its resets say.

An exact token bucket that admitted our request ``k`` (sent at ``t_k``) reports
``remaining_k = floor(level_k)``, the level after taking it.  Counting ``N_k``, the
admitted requests up to ``k``, ``y_k = remaining_k + N_k`` grows like ``R * t_k`` (the
refill), less the rounding (under one unit) and less whatever refill the bucket lost while
full.  While the server's bucket never filled up between two responses ``i < j``,
``R`` lies within ``[(y_j - y_i - 1) / (dt + J), (y_j - y_i + 1) / (dt - J)]`` (``J``:
how far the requests' transit times may differ).  It never filled up between two
consecutive admitted requests when the later one reports ``remaining <= C - 2``: had it
been full, that request would have left ``C - 1``.  So over the latest run of such
responses the bounds are proven, and they tighten as ``1 / dt``: no reset, at any
resolution, is needed (Anthropic's whole-second instants prove little about a bucket that
refills in 0.3 s).  The least-squares slope over the run is the estimate; it is clamped to
the bounds.

A run only forms while the client sends at least as fast as the server refills (else
the bucket is full and every response says ``C - 1``): the limiter probes upward to get
there (see ``limiter._Dimension``).
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

__all__ = ["RemainingTrend", "TrendEstimate"]

#: Admitted responses kept (enough for a run of many seconds at tens of requests/s).
_MAX_SAMPLES = 512
#: How much later (or earlier) one request may reach the server than another after the
#: limiter admitted both (a busy machine's threads): the bounds allow it on both ends.
TRANSIT_JITTER = 0.05
#: A run proves a rate once it spans this many refilled units (relative precision ~1/n).
MIN_UNITS = 8.0
#: The least-squares slope is fitted to the run's latest responses only (a bounded cost
#: per response on the pipeline's hot path); the bounds use the whole run.
_FIT_POINTS = 128


class TrendEstimate(NamedTuple):
    lo: float  # proven: the server refills at least this fast
    rate: float  # the least-squares estimate, within [lo, hi]
    hi: float  # proven: at most this fast
    span: float  # seconds the run covers
    end: float  # the send time of its last response
    #: ``remaining`` changed within the run: the level moved, so the slope measures the
    #: refill (a level that stays within one unit hides it: the slope is our own pace).
    moved: bool


class RemainingTrend:
    """(sent_at, remaining) of admitted requests of one key, read as above."""

    __slots__ = ("_samples", "estimate", "_cap", "_full")

    def __init__(self) -> None:
        # sorted by (sent_at, -remaining): of requests sent at one instant, the server
        # admitted the one that left more first
        self._samples: list[tuple[float, float]] = []
        #: The latest run's estimate (kept after the run ends: it stays proven until the
        #: quota changes, which :meth:`clear` reflects).
        self.estimate: TrendEstimate | None = None
        self._cap: float | None = None  # the capacity the run was told by
        self._full: tuple[float, float] | None = None  # the latest sample showing C - 1

    def clear(self) -> None:
        self._samples.clear()
        self.estimate = None
        self._cap = self._full = None

    def _find_full(self) -> None:
        self._full = None
        for item in reversed(self._samples):
            if -item[1] > self._cap - 2.0:  # type: ignore[operator]
                self._full = item
                return

    def discard(self, sent_at: float, remaining: float) -> None:
        """The response was a refusal after all (a 429 without ``retry-after`` looks
        admitted until ``observe_429``)."""
        item = (sent_at, -float(remaining))
        try:
            self._samples.remove(item)
        except ValueError:
            return
        if item == self._full:
            self._find_full()

    def add(self, sent_at: float, remaining: float, capacity: float) -> TrendEstimate | None:
        """Record an admitted response; returns the estimate of the run it ends (or the
        previous run's while the current one is too short)."""
        item = (sent_at, -float(remaining))
        bisect.insort(self._samples, item)
        if len(self._samples) > _MAX_SAMPLES:
            del self._samples[0]
        if capacity != self._cap:
            self._cap = capacity
            self._find_full()
        elif remaining > capacity - 2.0 and (self._full is None or item > self._full):
            self._full = item
        run = self._latest_run()
        if run is not None:
            self.estimate = _combined(self.estimate, run)
        return self.estimate

    def _latest_run(self) -> TrendEstimate | None:
        s = self._samples
        # the run starts at the latest response showing C - 1 (or the oldest kept)
        start = 0 if self._full is None else bisect.bisect_left(s, self._full)
        if start >= len(s) - 1:
            return None
        # y_k = remaining_k + (admitted requests after the run's first), the refill since
        t0, first = s[start][0], -s[start][1]
        last = len(s) - 1
        dt, dy = s[last][0] - t0, -s[last][1] + (last - start) - first
        if dy + 1.0 < MIN_UNITS or dt <= 4 * TRANSIT_JITTER:
            return None
        fit = max(start, len(s) - _FIT_POINTS)
        pts = [(t - t0, -neg + (fit + i - start)) for i, (t, neg) in enumerate(s[fit:])]
        lo = max(0.0, (dy - 1.0) / (dt + 2 * TRANSIT_JITTER))
        hi = (dy + 1.0) / (dt - 2 * TRANSIT_JITTER)
        n = len(pts)
        mt = sum(p[0] for p in pts) / n
        my = sum(p[1] for p in pts) / n
        var = sum((p[0] - mt) ** 2 for p in pts)
        slope = sum((p[0] - mt) * (p[1] - my) for p in pts) / var if var > 0 else dy / dt
        moved = len({neg for _, neg in s[max(start + 1, fit):]}) > 1
        return TrendEstimate(lo, min(hi, max(lo, slope)), hi, dt, s[-1][0], moved)


def _combined(old: TrendEstimate | None, new: TrendEstimate) -> TrendEstimate:
    """Runs of one quota prove the same rate: intersect their bounds.  Disjoint bounds mean
    the quota changed (or a transit took longer than allowed): the new run wins."""
    if old is None:
        return new
    lo, hi = max(old.lo, new.lo), min(old.hi, new.hi)
    if lo > hi:
        return new
    best = new if new.span >= old.span or not old.moved else old
    return TrendEstimate(lo, min(hi, max(lo, best.rate)), hi, best.span, new.end, best.moved)
