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
from collections import deque
from typing import Any

from .errors import ConfigError
from .rate_trend import RemainingTrend, TrendEstimate

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


# -- learning one dimension (requests or tokens) from headers ----------------------------

#: Samples of (remaining, reset) kept to bound the refill rate.
_MAX_SAMPLES = 32
#: Resets finer than this (durations in ms) are precise enough to pair up.
_PAIR_RESOLUTION = 0.01
#: Requests sent closer together than this may reach the server in either order.
_PAIR_MIN_GAP = 0.01
#: A learned rate lowered by 429s creeps back up by this share per admitted response, so
#: refusals from jitter do not ratchet it down for good: at most about one refusal per
#: 1/_CREEP responses once it is back at the quota.
_CREEP = 1e-4
#: The source of a rate only stated (``limit / window``), which no reset confirmed: not
#: enforced beside a configured rate.
_UNCONFIRMED = "headers: limit per window (unconfirmed)"
#: Requests sent closer together than this are not compared by their ``remaining``.
_ADMIT_MIN_GAP = 0.05
#: Probing while no reset bounds the rate: the step up per response that shows the
#: server's bucket full although ours held a request back within the last
#: ``_PROBE_RECENT`` seconds, and the cut per 429 before any run of responses proved an
#: upper bound (after one: ``_CUT_PROVEN``).
_PROBE_STEP = 0.05
#: After this many responses in a row showing the server's bucket full, a refusal long
#: ago no longer holds the probe to creeping.
_FULL_STREAK = 20
#: Whole-second resets prove a rate only when their bounds are this close (a slow
#: bucket's, if ever); else the rate is a working one, probed.  (ms durations prove it.)
_TIGHT = 0.05
_PROBE_RECENT = 1.0
_CUT_UNPROVEN = 0.5
_CUT_PROVEN = 0.99
_CUT_FIRST = 1.0 / (1.0 + _PROBE_STEP)  # undo one step
#: Acquisitions remembered to account for the requests sent after a response's own.
_MAX_HISTORY = 4096


class _Evidence:
    """What a server's headers proved about one quota (requests or tokens).

    The model (every provider documents its reset this way): an exact token bucket of
    capacity ``C`` refilling at ``rate``; a response says ``remaining`` = floor(level) and
    ``reset`` = the time until the bucket is full again, ``(C - level) / rate``.  So each
    response with a reset bounds the rate: with ``d = C - remaining``, the true level lies
    in [remaining, remaining + 1), and ``rate`` in ``[(d - 1) / (reset + res), d / (reset -
    res)]`` where ``res`` is how far the reset may be off (half a millisecond for
    durations, 1 s plus the latency for RFC 3339 instants).  The bounds of many responses intersect; the upper one (never below the
    truth) is the learned rate.

    ``C`` is either ``limit`` (OpenAI: the bucket holds a minute's quota) or, for
    requests, ``peak remaining + 1`` (a server that states a per-minute, per-second or
    daily ``limit`` but enforces a small burst shows the burst by never reporting more).
    In that order: the stated rate (``limit / window``, per minute unless the protocol
    says otherwise) with either capacity, when every response agrees with it; else the
    resets' upper bound, the smaller capacity first; else (no usable reset) the stated
    rate as a prior.  An admitted request's response also proves ``level <= C - 1``.
    Evidence that no shape explains (a changed quota) is dropped, oldest first.
    """

    __slots__ = ("limit", "window", "peak", "samples", "learn_burst", "rate", "capacity",
                 "source", "proven")

    def __init__(self, learn_burst: bool) -> None:
        self.limit: float | None = None
        self.window = 60.0
        self.peak = -1.0
        # (remaining, reset, resolution, admitted)
        self.samples: list[tuple[float, float, float, bool]] = []
        self.learn_burst = learn_burst
        self.rate: float | None = None
        self.capacity: float | None = None
        self.source: str | None = None
        #: The resets bound the rate from above (else it is a prior or a lower bound).
        self.proven = False

    def add(self, limit: float | None, remaining: float | None, reset: float | None,
            window: float | None, resolution: float, admitted: bool = False) -> None:
        if limit is not None and limit > 0 and not math.isinf(limit):
            if self.limit is not None and limit != self.limit:
                self.samples.clear()  # the quota changed: old evidence is void
                self.peak = -1.0
            self.limit = float(limit)
        if window and window > 0:
            self.window = float(window)
        if remaining is not None and remaining >= 0:
            if remaining > self.peak:
                self.peak = float(remaining)
            if reset is not None and reset >= 0:
                self.samples.append((float(remaining), float(reset), resolution,
                                     admitted and self.learn_burst))
                del self.samples[:-_MAX_SAMPLES]
        self._solve()

    def _bounds(self, cap: float) -> tuple[float, float] | None:
        lo, hi = 0.0, math.inf
        for remaining, reset, res, admitted in self.samples:
            d = cap - remaining
            if d <= 0:
                if d < 0 or admitted:
                    return None  # more left than this capacity holds
                continue  # a full bucket says nothing about the rate
            # an admitted request just took one: the level is at most C - 1 then
            d_lo = max(d - 1.0, 1.0) if admitted else max(0.0, d - 1.0)
            lo = max(lo, d_lo / (reset + res))
            hi = min(hi, d / (reset - res) if reset > res else math.inf)
            if lo > hi * (1 + 1e-9):
                return None
        return lo, hi

    def lo_of(self, cap: float) -> float:
        b = self._bounds(cap)
        return 0.0 if b is None else b[0]

    def _solve(self) -> None:
        while True:
            found = self._fit()
            if found is not None or len(self.samples) <= 1:
                break
            del self.samples[0]  # contradicted by what came after
        coarse = any(res >= 1.0 for _, _, res, _ in self.samples)
        self.proven = (found is not None and found[2] != _UNCONFIRMED
                       and (not coarse or self._tight(found[1])))
        if found is None:
            found = self._fallback()
        self.rate, self.capacity, self.source = found if found else (None, None, None)

    def _tight(self, cap: float) -> bool:
        """The resets pin the rate (within _TIGHT), not merely bound it."""
        b = self._bounds(cap)
        return b is not None and b[0] > 0 and b[1] <= b[0] * (1.0 + _TIGHT)

    def _fit(self) -> tuple[float, float, str] | None:
        if not self.samples:
            return self._fallback()
        burst = self.peak + 1.0 if self.learn_burst and self.peak >= 0 else None
        limit = self.limit
        if limit is not None and burst is not None and burst == limit:
            burst = None  # the same candidate
        prior = None if limit is None else limit / self.window
        fits: list[tuple[float, tuple[float, float]]] = []
        for cap in (limit, burst):
            if cap is not None:
                bounds = self._bounds(cap)
                if bounds is not None:
                    fits.append((cap, bounds))
        # the stated rate, with either capacity, when the resets agree with it ...
        for cap, (lo, hi) in fits:
            if (prior is not None and not math.isinf(hi) and lo <= prior * (1 + 1e-9)
                    and prior <= hi * (1 + 1e-9)):
                return prior, cap, "headers: limit per window"
        # ... else what the resets prove, the smaller capacity first
        for cap, (lo, hi) in sorted(fits, key=lambda f: f[0]):
            if not math.isinf(hi):
                return hi, cap, "headers: reset"
        return None

    def _fallback(self) -> tuple[float, float, str] | None:
        if self.limit is None:
            return None
        cap = self.limit
        if self.learn_burst and self.peak >= 0:
            cap = max(1.0, self.peak + 1.0)
        lo = 0.0
        b = self._bounds(cap)
        if b is not None:
            lo = b[0]
        return max(self.limit / self.window, lo), cap, _UNCONFIRMED


class _Dimension:
    """One quota dimension of a key: a configured bucket, a learned one, or both (all
    enforced), the evidence, and the history of what was taken when."""

    __slots__ = ("trend", "trend_limit", "probe", "probe_refused", "full_streak", "limited_at", "full_by", "admits", "admit_floor", "learned_at", "ceiling", "resets", "pairs", "name", "burst", "cfg_rate", "cfg_cap", "cfg_cap_source", "configured", "learned",
                 "evidence", "history", "taken", "rate_source", "cap_source")

    def __init__(self, name: str, cfg_rate: float | None, cfg_cap: float | None,
                 cap_source: str, now: float, burst: float | None = None) -> None:
        self.name = name
        self.burst = burst  # a configured burst also bounds a learned bucket
        self.cfg_rate = cfg_rate
        self.cfg_cap = cfg_cap
        self.cfg_cap_source = cap_source
        self.configured = (None if cfg_rate is None or cfg_cap is None
                           else TokenBucket(cfg_rate, cfg_cap, now))
        self.learned: TokenBucket | None = None
        self.evidence = _Evidence(learn_burst=name == "requests")
        self.history: deque[tuple[float, float]] = deque(maxlen=_MAX_HISTORY)
        self.taken = 0.0  # cumulative units taken (estimates, for tokens)
        self.resets: deque[tuple[float, float]] = deque(maxlen=64)  # (sent_at, reset)
        self.pairs: deque[float] = deque(maxlen=15)  # rate estimates from pairs of resets
        self.ceiling: float | None = None  # the learned rate as 429s lowered it
        self.learned_at = math.inf  # when the learned bucket started pacing
        self.admits: deque[tuple[float, float]] = deque(maxlen=24)  # (sent_at, remaining)
        self.admit_floor = 0.0  # the refill rate the server's admissions prove
        self.full_by: tuple[float, float] | None = None  # (when full, the send it is from)
        self.trend = RemainingTrend()  # the rate ``remaining`` proves over time
        self.trend_limit: float | None = None  # the stated limit the trend is about
        #: The working rate (and its source) while no reset bounds the rate from above.
        self.probe: tuple[float, str] | None = None
        self.probe_refused = False  # a 429 refused the working rate: probe by creeping
        self.full_streak = 0  # responses in a row showing the server's bucket full
        self.limited_at = -math.inf  # when the learned bucket last held a request back
        self.rate_source = None if cfg_rate is None else "configured"
        self.cap_source = None if cfg_rate is None else cap_source

    def buckets(self) -> list[TokenBucket]:
        return [b for b in (self.configured, self.learned) if b is not None]

    def wait_time(self, cost: float, now: float) -> float:
        wait = 0.0
        for b in self.buckets():
            w = b.wait_time(cost, now)
            if b is self.learned and w > 0:
                self.limited_at = now
            if b is self.learned and w > 0 and self.full_by is not None:
                # The server said its bucket is full by ``full_by``: it then holds C less
                # what we sent since.  Never wait longer than that for a learned guess.
                t_full, sent = self.full_by
                since = self.taken_since(sent)
                if since is not None and b.capacity - since >= min(cost, b.capacity):
                    if now >= t_full:
                        b.set_level(max(b.level(now), b.capacity - since), now)
                        w = b.wait_time(cost, now)
                    else:
                        w = min(w, t_full - now)
            wait = max(wait, w)
        return wait

    def take(self, cost: float, now: float) -> None:
        for b in self.buckets():
            b.take(cost, now)
        if cost > 0:
            self.taken += cost
            self.history.append((now, self.taken))

    def refund(self, amount: float, now: float, since: float | None) -> None:
        for b in self.buckets():
            b.refund(_decayed(b, amount, now, since), now)

    def _admitted(self, sent_at: float, remaining: float) -> float:
        """A lower bound on the refill rate from what the server admitted: between two
        admitted requests i, j it refilled at least ``r_j - r_i - 1 + n`` units (``n``:
        the admitted requests sent in between, j included; a bucket that filled up only
        hides refill), in ``sent_j - sent_i`` (plus 10 ms for the requests' transit).
        Any reset resolution: this is what lifts an under-estimated rate at once."""
        best = 0.0
        self.admits.append((sent_at, remaining))
        # of requests sent at one instant, the one that left more was admitted first
        items = sorted(self.admits, key=lambda a: (a[0], -a[1]))
        for i, (t_i, r_i) in enumerate(items):
            n = 0
            for t_k, r_k in items[i + 1:]:
                n += 1
                if t_k > sent_at:
                    break
                if t_k == sent_at and r_k == remaining and t_k - t_i >= _ADMIT_MIN_GAP:
                    best = max(best, (remaining - r_i - 1.0 + n) / (t_k - t_i + 0.01))
        self.admit_floor = max(best, self.admit_floor * 0.999)  # fades if never seen again
        return self.admit_floor

    def _taken_at(self, t: float) -> float | None:
        for stamp, total in reversed(self.history):
            if stamp <= t:
                return total
        return None if len(self.history) == self.history.maxlen else 0.0

    def _pair(self, sent_at: float, reset: float, resolution: float) -> None:
        """Two admitted responses i, j (sent in that order): between them the server
        refilled ``rate * (sent_j - sent_i)`` and lost the ``n`` units we sent, so its
        time-to-full fell by ``(sent_j - sent_i) - n / rate``.  Solved for the rate;
        exact while the bucket did not fill up in between (else an under-estimate, so
        such pairs are skipped: j must be sent before i's reset was over)."""
        prev = None
        for item in reversed(self.resets):
            if item[0] < sent_at:
                prev = item
                break
        self.resets.append((sent_at, reset))
        if (prev is None or sent_at - prev[0] >= prev[1] - 2 * _PAIR_RESOLUTION
                or sent_at - prev[0] < _PAIR_MIN_GAP):
            return  # the bucket may have filled in between, or the two may have crossed
        a, b = self._taken_at(prev[0]), self._taken_at(sent_at)
        if a is None or b is None or b - a < 1.0:
            return
        # minus the resets' rounding: an upper estimate, never below the truth
        denom = (sent_at - prev[0]) - prev[1] + reset - 2 * resolution
        if denom > 2 * _PAIR_RESOLUTION:
            self.pairs.append((b - a) / denom)

    def _floor(self, cap: float) -> float:
        """The slowest refill the evidence proves: the resets' and, once a run of
        responses proved one, the trend's (it allows for the requests' transit varying by
        TRANSIT_JITTER); before that, the admissions'.  (Two admissions a few hundred ms
        apart, one of them late by tens of ms on a busy machine, overstate the rate by as
        many per cent: that lower bound only lifts the rate until a run gives a better
        one.)"""
        est = self.trend.estimate
        if est is not None:
            return max(self.evidence.lo_of(cap), est.lo)
        return max(self.admit_floor, self.evidence.lo_of(cap))

    def _trend_rate(self, rate: float, cap: float, source: str, sent_at: float,
                    remaining: float, est: TrendEstimate | None) -> tuple[float, str]:
        """The rate once ``remaining`` over time is read too (see :mod:`.rate_trend`).

        Resets that bound the rate from above (ms durations) are exact already, and more
        so than the trend (whose send times are when requests were admitted, not when
        they reached the server): they are kept (ms resets pin it within a response or
        two, so only whole-second ones get here).  Where none does (whole-second instants),
        the rate is a working one, AIMD-like: raised
        5 % per response showing the server's bucket full while ours held requests back
        (we are below the quota), set to the trend's estimate whenever a run of responses
        extends it, cut on a 429 (:meth:`refused`), never below what is proven nor above
        the trend's proven upper bound."""
        ev = self.evidence
        if ev.proven or self.configured is not None:
            return rate, source  # (a configured rate is never probed above)
        if self.probe is None:
            self.probe = (rate, source)
        p, source = self.probe
        if remaining < cap - 1.0:
            self.full_streak = 0
        if est is not None and est.end == sent_at and est.moved:
            # the run shows the level moving: its slope is the refill, not our own pace
            p, source = est.rate, "headers: remaining over time"
        elif est is not None and est.end == sent_at and est.rate > p:
            # a level that stayed within one unit: the server kept up with our pace
            p, source = est.rate, "headers: remaining over time"
        elif remaining >= cap - 1.0 and sent_at - self.limited_at <= _PROBE_RECENT:
            # after a refusal, creep (about one refusal per 1/_CREEP responses at most),
            # until the server's bucket has shown full many times over: then step again
            self.full_streak += 1
            if self.full_streak >= _FULL_STREAK and cap >= 2.0:  # (a bucket of 1 is
                # "full" at every admission: no evidence of being below the quota)
                self.probe_refused = False
            p = p * (1.0 + (_CREEP if self.probe_refused else _PROBE_STEP))
            if est is not None:
                p = min(p, est.hi)
            source = "headers: probed above what is proven"
        if est is not None and p > est.hi:
            p, source = est.hi, "headers: remaining over time"
        bounds = ev._bounds(cap)
        if bounds is not None and p > bounds[1]:
            p, source = bounds[1], "headers: reset"
        floor = self._floor(cap)
        if floor > p:
            p, source = floor, "headers: remaining (server admitted faster)"
        self.probe = (p, source)
        return p, source

    def _taken_at_instant(self, t: float) -> float:
        """Units taken at exactly ``t`` besides one request's own (its siblings)."""
        at = before = None
        for stamp, total in reversed(self.history):
            if stamp > t:
                continue
            if stamp == t:
                at = total if at is None else at
                continue
            before = total
            break
        if at is None:
            return 0.0
        return max(0.0, at - (before or 0.0) - 1.0)

    def taken_since(self, t: float) -> float | None:
        """Units taken strictly after ``t``; None when history no longer reaches back."""
        before = 0.0
        found = False
        for stamp, total in reversed(self.history):
            if stamp <= t:
                before, found = total, True
                break
        if not found:
            if len(self.history) == self.history.maxlen:
                return None
            before = 0.0
        return max(0.0, self.taken - before)

    def rate(self) -> float | None:
        """The binding refill rate (units/s): the smaller of configured and learned."""
        rates = [b.rate for b in self.buckets()]
        return min(rates) if rates else None

    def observe(self, limit: float | None, remaining: float | None, reset: float | None,
                window: float | None, resolution: float, sent_at: float, now: float,
                admitted: bool = False) -> None:
        ev = self.evidence
        ev.add(limit, remaining, reset, window, resolution, admitted)
        rate, cap, source = ev.rate, ev.capacity, ev.source
        if admitted and reset is not None and resolution <= _PAIR_RESOLUTION:
            self._pair(sent_at, reset, resolution)
            if source == "headers: reset" and self.pairs and rate is not None:
                # The rounding of ``remaining`` leaves the bounds loose while the client
                # sends in step with the server; pairs of resets are exact: clamp to them.
                est = sorted(self.pairs)[len(self.pairs) // 2]
                rate = max(ev.lo_of(cap), min(rate, est)) if cap is not None else rate
        if admitted and reset is not None and not math.isinf(resolution):
            self.full_by = (sent_at + reset + resolution, sent_at)
        if admitted and remaining is not None and self.evidence.learn_burst:
            floor = self._admitted(sent_at, remaining)
            if rate is not None and floor > rate:
                # the server admitted faster than the learned rate allows: believe it
                rate, source = floor, "headers: remaining (server admitted faster)"
            if ev.limit != self.trend_limit:  # a new quota: old runs and probes are void
                self.trend.clear()
                self.probe, self.trend_limit, self.probe_refused = None, ev.limit, False
            # every admitted response counts (the trend counts the requests between two);
            # a run is told by the smallest capacity the server may have (peak + 1)
            trend = self.trend.add(sent_at, remaining, ev.peak + 1.0)
            if rate is not None and cap is not None and source is not None:
                if resolution >= 1.0 or self.probe is not None:
                    rate, source = self._trend_rate(rate, cap, source, sent_at, remaining,
                                                    trend)
        elif (self.probe is not None and not ev.proven and self.configured is None
              and rate is not None):
            rate, source = self.probe  # a refusal's headers do not reset the working rate
        if self.ceiling is not None and admitted and ev.proven:
            self.ceiling *= 1.0 + _CREEP
        if (self.ceiling is not None and source is not None and rate is not None
                and cap is not None and self.ceiling < rate and ev.proven):
            rate = max(0.99 * ev.lo_of(cap), self.ceiling)
            source += ", lowered by 429s"
        if rate is not None and cap is not None and self.burst is not None:
            cap = min(cap, self.burst)
        if (rate is not None and cap is not None
                and not (self.configured is not None and not ev.proven)):
            # (beside a configured rate, only a rate the resets pin is enforced)
            if self.learned is None:
                # start where our own pacing is, else at what the server said; the
                # correction below then applies what ``remaining`` proves
                start = (self.configured.level(now) if self.configured is not None else
                         None if remaining is None else max(0.0, remaining))
                self.learned = TokenBucket(rate, cap, now, start)
                self.learned_at = now
            elif (rate, cap) != (self.learned.rate, self.learned.capacity):
                self.learned.reconfigure(rate, cap, now)
        if self.configured is not None:
            # The burst the server tolerates wins over a larger configured one.
            if (ev.learn_burst and ev.peak >= 0 and ev.capacity is not None
                    and self.cfg_cap is not None):
                want = min(self.cfg_cap, ev.capacity)  # a new peak may raise it again
                if self.configured.capacity != want:
                    self.configured.reconfigure(self.configured.rate, want, now)
                self.cap_source = "headers" if want < self.cfg_cap else self.cfg_cap_source
            self.rate_source = "configured"
        else:
            self.rate_source = source
            self.cap_source = None if self.learned is None else "headers"
        if remaining is None:
            return
        since = self.taken_since(sent_at)
        if since is None:
            return
        # ``remaining`` was counted when the server handled the request, somewhere in
        # [sent_at, now], rounded down: the server held less than remaining + 1 then, has
        # refilled at most rate * (now - sent_at) since, and lost what was sent after.
        bucket = self.learned or self.configured
        refill = bucket.rate if bucket is not None else 0.0
        held = remaining + 1.0
        if reset is not None and self.learned is not None and not math.isinf(resolution):
            # with the bucket's shape known, the reset pins the level closer than the
            # rounding does: C - rate * reset (widened by the reset's resolution)
            b = self.learned
            held = min(held, max(remaining, b.capacity - b.rate * max(0.0, reset - resolution)))
        upper = held + refill * max(0.0, now - sent_at) - since
        # requests sent at the same instant may have reached the server after this one
        lower = remaining - since - self._taken_at_instant(sent_at)
        for b in self.buckets():
            if b.level(now) > upper:
                b.set_level(max(0.0, upper) if upper < b.capacity else b.capacity, now)
        if self.learned is not None and self.learned.level(now) < lower:
            # The server holds more than we thought (it refilled, or idled to full):
            # never stall on our own under-estimate.
            self.learned.set_level(lower, now)

    def refused(self, now: float, sent_at: float | None,
                looked_admitted: float | None = None, repeated: bool = False) -> None:
        """A 429 although the learned bucket admitted the request: the rate, which the
        headers only bound from above, is too high.  Lower it 1 % per refusal, never
        more than 1 % below what the headers prove (their lower bound): pacing a hair
        under the quota costs far less than a refusal every few requests.  It creeps
        back up by ``_CREEP`` per admitted response."""
        ev, b = self.evidence, self.learned
        if sent_at is not None and looked_admitted is not None:
            # its headers had no retry-after, so they were read as an admitted response's
            self.trend.discard(sent_at, looked_admitted)
            if (sent_at, looked_admitted) in self.admits:
                self.admits.remove((sent_at, looked_admitted))
        if sent_at is None or sent_at < self.learned_at:
            return  # sent before anything was learned: no verdict on the learned rate
        if b is None or ev.source is None or ev.rate is None or ev.capacity is None:
            return
        if self.probe is not None and not ev.proven:
            # a working rate (see _trend_rate): cut it, hard while nothing bounds it
            p, src = self.probe
            floor = self._floor(b.capacity)
            # halve only a rate that draws 429 after 429 and that nothing supports (e.g. a
            # daily limit read per minute); a right prior overshot by a probe loses 1 %
            # (the first refusal after 5 % steps undoes one step)
            cut = (_CUT_UNPROVEN if repeated and self.trend.estimate is None
                   and p > 2.0 * floor else _CUT_PROVEN if self.probe_refused
                   else _CUT_FIRST)
            # (after halving a baseless rate, probing may step again; so it may after a
            # refusal of a rate no faster than the proven one: a burst's, not the rate's)
            self.probe_refused = cut != _CUT_UNPROVEN and p > floor * (1.0 + 1e-6)
            p = max(0.99 * floor, p * cut)
            self.full_streak = 0
            if not src.endswith(", lowered by 429s"):
                src += ", lowered by 429s"
            self.probe = (p, src)
            if p < b.rate:
                b.reconfigure(p, b.capacity, now)
                self.rate_source = src
            return
        self.ceiling = 0.99 * max(ev.lo_of(ev.capacity), b.rate)
        if self.ceiling < b.rate:
            b.reconfigure(self.ceiling, b.capacity, now)
            self.rate_source = ev.source + ", lowered by 429s"

    def describe(self, now: float) -> dict[str, Any] | None:
        if not self.buckets():
            ev = self.evidence
            if ev.limit is None and ev.peak < 0:
                return None
        rate = self.rate()
        caps = [b.capacity for b in self.buckets()]
        cap = min(caps) if caps else None
        levels = [b.level(now) for b in self.buckets()]
        return {
            "rate_per_second": rate,
            "per_minute": None if rate is None else rate * 60.0,
            "capacity": cap,
            "window": None if rate is None or cap is None else cap / rate,
            "level": min(levels) if levels else None,
            "rate_source": self.rate_source,
            "capacity_source": self.cap_source,
            "stated_limit": self.evidence.limit,
            "stated_window": self.evidence.window if self.evidence.limit is not None else None,
        }


class KeyLimiter:
    """Per-key admission: a request dimension (requests/s) and a token dimension (tokens/s).

    Unknown limits mean unlimited until learned.  Learns from response headers
    (:meth:`observe`) and from 429s (:meth:`observe_429`) so keys are used up to their
    quota without being refused.

    Bucket shapes (a deliberate choice):

    * configured requests/min ``R``: rate ``R/60`` per second, capacity ``burst`` or, by
      default, ``max(1, R/60)`` -- one second's worth -- lowered to the burst the server
      shows it tolerates (see :class:`_Evidence`).  In any window of ``T`` seconds at most
      ``capacity + R*T/60`` requests are admitted.
    * configured tokens/min ``M``: rate ``M/60``, capacity ``M`` (one minute's worth),
      since one request may legitimately cost a large share of the minute's tokens.
    * learned from headers: a second bucket per dimension with the rate and capacity the
      evidence proves (:class:`_Evidence`); configured and learned buckets are both
      enforced, so a configured per-minute rate and a server's daily quota both hold.
    * ``remaining`` corrects the level only by what it proves once the latency since the
      request was sent (``sent_at``) and the rounding are accounted for: down to at most
      ``remaining + 1 + refill since sent - taken since sent``, and (learned bucket) up to
      ``remaining - taken since sent`` -- a server reporting more than we thought is
      believed at once, so an under-estimated rate never stalls the key.
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
        r_rate = None if requests_per_minute is None else requests_per_minute / 60.0
        r_cap = None if r_rate is None else (burst if burst is not None else max(1.0, r_rate))
        self._req = _Dimension("requests", r_rate, r_cap,
                               "configured" if burst is not None else "default: 1 s of rate", now, burst)
        t_rate = None if tokens_per_minute is None else tokens_per_minute / 60.0
        self._tok = _Dimension("tokens", t_rate, tokens_per_minute,
                               "default: 1 min of rate", now)
        self._cooldown_until = -math.inf
        self._cooldown_source: str | None = None
        self._consecutive_429 = 0
        self._tokens_exhausted = False
        self._last_sent_at: float | None = None
        self._looked_admitted: float | None = None

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
        wait = max(wait, self._req.wait_time(1.0, now))
        return max(wait, self._tok.wait_time(max(0.0, tokens), now))

    def acquire(self, tokens: float, now: float) -> bool:
        """Take one request and ``tokens`` if :meth:`wait_time` is 0; else take nothing."""
        if self.wait_time(tokens, now) > 0.0:
            return False
        self._req.take(1.0, now)
        if tokens > 0:
            self._tok.take(tokens, now)
        return True

    def book(self, tokens: float, now: float) -> None:
        """Take one request and ``tokens`` whatever the buckets hold: a request another
        gate admitted (a shared store's), so that this limiter, used as its learner,
        accounts for what was sent exactly as if it had admitted it."""
        self._req.take(1.0, now)
        if tokens > 0:
            self._tok.take(tokens, now)

    def binding(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(request rate/s, request capacity, token rate/s, token capacity) that bind:
        the smallest over the configured and learned buckets (None: unlimited)."""
        out: list[float | None] = []
        for dim in (self._req, self._tok):
            bs = dim.buckets()
            out += [min(b.rate for b in bs), min(b.capacity for b in bs)] if bs else [None, None]
        return out[0], out[1], out[2], out[3]

    def reconcile(self, estimated: float, actual: float, now: float, *,
                  acquired_at: float | None = None) -> None:
        """Fix the token buckets once the true usage is known: refund an over-estimate,
        or book the shortfall as debt.  See :meth:`release_unsent` for ``acquired_at``."""
        delta = estimated - actual
        if delta > 0:
            self._tok.refund(delta, now, acquired_at)
            self._tok.taken -= delta
        elif delta < 0:
            self._tok.take(-delta, now)

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
        self._req.refund(1.0, now, acquired_at)
        self._req.taken -= 1.0
        if tokens > 0:
            self._tok.refund(tokens, now, acquired_at)
            self._tok.taken -= tokens

    # -- learning ---------------------------------------------------------------------

    def observe(self, info: Any, now: float, *, sent_at: float | None = None) -> None:
        """Learn from a response's rate-limit headers (a ``RateLimitInfo``).

        ``sent_at`` (when the request was admitted, as passed to :meth:`acquire`) lets
        ``remaining`` be read as what it is: a count made one latency ago; without it
        the response is taken as counted ``now``.  A ``remaining`` of 0 with no rate to
        pace by cools the key down until ``sent_at + reset``.  ``retry_after`` is not read here: a 429 goes through :meth:`observe_429`.
        """
        sent = now if sent_at is None or sent_at > now else sent_at
        self._last_sent_at = sent_at  # a 429's observe_429 follows its observe
        self._looked_admitted = (info.remaining_requests if info.retry_after is None
                                 and info.remaining_requests is not None else None)
        res = getattr(info, "reset_resolution", 0.0005)
        if res >= 1.0:
            # an instant (Anthropic) read on arrival: the server counted up to one
            # latency earlier, so the reset it meant may be that much longer
            res += now - sent
        for dim, limit, remaining, reset, window in (
                (self._req, info.limit_requests, info.remaining_requests, info.reset_requests,
                 info.request_window),
                (self._tok, info.limit_tokens, info.remaining_tokens, info.reset_tokens,
                 info.token_window)):
            dim.observe(limit, remaining, reset, window, res, sent, now,
                        admitted=info.retry_after is None)
            if (remaining is not None and remaining <= 0 and reset is not None and reset > 0
                    and dim.rate() is None):
                # No rate to refill a bucket by: wait out the reset, counted from when
                # the server could first have said it (a bucket paces the known rates).
                if sent + reset > self._cooldown_until:
                    self._cooldown_until = sent + reset
                    self._cooldown_source = f"headers: {dim.name} remaining 0"
        self._tokens_exhausted = info.remaining_tokens is not None and info.remaining_tokens <= 0

    def observe_429(self, retry_after: float | None, now: float) -> None:
        """The provider said no: empty the request buckets and cool down.

        With a ``retry_after`` the cooldown is that long -- but a whole-second one
        (Anthropic's, or any rounded up) only proves the wait is over ``retry_after - 1``:
        when a request rate is known (learned; configured where the resets are whole
        seconds) and the refusal was not for
        tokens, the cooldown is the later of that and one refill step (``1/rate``), not
        most of an idle second.  Without a hint: an adaptive 1 s, 2 s, 4 s ... (capped at
        60 s) that grows with consecutive 429s until :meth:`observe_success`.  The request
        buckets restart from empty, so waiters are released one refill step apart.
        """
        self._consecutive_429 += 1
        # the learned request rate, or, where the headers' resets are whole seconds (no
        # learned bucket beside a configured rate then), the configured one
        learned = self._req.learned
        coarse = any(res >= 1.0 for _, _, res, _ in self._req.evidence.samples)
        rate = (learned.rate if learned is not None else
                self._req.rate() if coarse else None)
        if retry_after is not None and retry_after >= 0:
            wait = float(retry_after)
            source = "429: retry-after"
            if (rate is not None and not self._tokens_exhausted and wait >= 1.0
                    and wait == math.floor(wait)):
                shorter = max(wait - 1.0, 1.0 / rate)
                if shorter < wait:
                    wait, source = shorter, "429: whole-second retry-after, learned rate"
        else:
            wait = min(BACKOFF_429_MAX,
                       BACKOFF_429_BASE * 2.0 ** min(self._consecutive_429 - 1, 64))
            source = "429: adaptive backoff"
        if now + wait > self._cooldown_until:
            self._cooldown_until = now + wait
            self._cooldown_source = source
        if not self._tokens_exhausted:
            self._req.refused(now, self._last_sent_at, self._looked_admitted,
                              repeated=self._consecutive_429 >= 2)
        self._last_sent_at = self._looked_admitted = None  # (a 429 without headers)
        for b in self._req.buckets():
            if b.level(now) > 0:
                b.set_level(0.0, now)

    def observe_success(self, now: float) -> None:
        """A request on this key succeeded: the adaptive 429 backoff starts over."""
        self._consecutive_429 = 0

    # -- inspection -------------------------------------------------------------------

    def cooldown(self, now: float) -> float:
        """Seconds of cooldown left (0.0 when none)."""
        return max(0.0, self._cooldown_until - now)

    def headroom(self, now: float) -> float:
        """0.0..1.0: the available share of the request buckets (1.0 when unlimited;
        0.0 while cooling down).  Strategies prefer keys with more."""
        if self._cooldown_until > now:
            return 0.0
        shares = [b.level(now) / b.capacity for b in self._req.buckets()]
        return min(1.0, max(0.0, min(shares))) if shares else 1.0

    @staticmethod
    def _per_minute(dim: _Dimension) -> float | None:
        if dim.cfg_rate is not None:
            return dim.cfg_rate * 60.0
        return None if dim.learned is None else dim.learned.rate * 60.0

    @property
    def requests_per_minute(self) -> float | None:
        """The configured request rate, else the learned one (per minute)."""
        return self._per_minute(self._req)

    @property
    def tokens_per_minute(self) -> float | None:
        return self._per_minute(self._tok)

    @property
    def learned(self) -> bool:
        return self._req.learned is not None or self._tok.learned is not None

    @staticmethod
    def _level(dim: _Dimension, now: float) -> float | None:
        levels = [b.level(now) for b in dim.buckets()]
        return min(levels) if levels else None

    def snapshot(self, now: float) -> dict:
        """The state, and where each figure came from (``requests`` / ``tokens``:
        rate, capacity, window = capacity / rate, their sources; None when unknown)."""
        cooldown = self.cooldown(now)
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "request_level": self._level(self._req, now),
            "token_level": self._level(self._tok, now),
            "cooldown": cooldown,
            "cooldown_source": self._cooldown_source if cooldown > 0 else None,
            "learned": self.learned,
            "requests": self._req.describe(now),
            "tokens": self._tok.describe(now),
        }
