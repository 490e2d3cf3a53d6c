"""A :class:`~ipfs_accelerate_py.limiter.KeyLimiter` whose buckets live in Redis.

Same interface and semantics as the core's limiter (request and token buckets, learned
limits, 429 cooldowns with adaptive backoff), shared by every process that uses the same
Redis and scope.  The learning is the core's own: each process runs a
:class:`KeyLimiter` as its learner (fed the same acquisitions, responses and 429s as an
in-process limiter would be) and hands the script the rates and capacities it learned.  Each call makes at most one round trip: ``acquire``, ``observe``,
``observe_429``, ``release_unsent`` and ``reconcile`` run one atomic script; ``wait_time``,
``headroom`` and ``snapshot`` answer from the last state read (see :mod:`.mirror`),
re-reading it when it is older than the store's ``refresh`` interval.

While Redis is unreachable a local :class:`KeyLimiter` at this process's share of the
configured rates (``1/N`` of the N processes last seen alive, or ``local_share``) takes
over, or, with ``fail_closed``, nothing is admitted.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ipfs_accelerate_py.limiter import KeyLimiter
from ipfs_accelerate_py.state import Limiter

from .mirror import LimiterMirror

if TYPE_CHECKING:  # pragma: no cover
    from .store import RedisStateStore

_DOWN = object()


def _num(v: float | None) -> str:
    """A finite number as a script argument; None / inf / nan as "" (unknown)."""
    if v is None:
        return ""
    v = float(v)
    return repr(v) if math.isfinite(v) else ""


class RedisLimiter(Limiter):
    """Per-key admission shared through Redis (drop-in for ``KeyLimiter``)."""

    def __init__(self, store: RedisStateStore, redis_key: str, requests_per_minute: float | None,
                 tokens_per_minute: float | None, burst: float | None, now: float) -> None:
        self._store = store
        self._rates = (requests_per_minute, tokens_per_minute, burst)
        # Validates the arguments exactly as the core does, and is the fallback.
        self._fallback = self._make_local(now)
        self._fallback_outage = store.health.outages
        # The core's learner, at the full configured rates: what it learns is pushed to
        # the shared bucket (its own buckets admit nothing).
        self._learner = KeyLimiter(now, requests_per_minute, tokens_per_minute, burst)
        self._key = redis_key
        self._cfg = [_num(requests_per_minute), _num(tokens_per_minute), _num(burst),
                     str(int(store.ttl * 1000))]
        self._mirror: LimiterMirror | None = None
        self._run("peek")

    def _make_local(self, now: float) -> KeyLimiter:
        """A local limiter at this process's share of the rates (see
        :meth:`RedisStateStore.fallback_share`), burst included, so the processes sharing
        the key stay within its quota together while Redis is away."""
        share = self.fallback_share = self._store.fallback_share()
        rpm, tpm, burst = self._rates
        return KeyLimiter(now, None if rpm is None else rpm * share,
                          None if tpm is None else tpm * share,
                          None if burst is None else max(1.0, burst * share))

    @property
    def _local(self) -> KeyLimiter:
        """The fallback, rebuilt at the start of each outage with the share known then."""
        outages = self._store.health.outages
        if outages != self._fallback_outage:
            self._fallback_outage = outages
            self._fallback = self._make_local(time.monotonic())
        return self._fallback

    # -- plumbing ---------------------------------------------------------------------
    def _run(self, op: str, *extra: Any) -> Any:
        """One script call; returns its result, or ``_DOWN`` when Redis is unreachable."""
        store = self._store
        if not store.health.usable():
            return _DOWN
        t0 = time.monotonic()
        try:
            reply = store.limiter_script(keys=[self._key], args=[op, *self._cfg, *extra])
        except store.down_errors as exc:
            store.health.failed(exc, store.fallback_description)
            return _DOWN
        store.health.succeeded()
        m = self._mirror = LimiterMirror((t0 + time.monotonic()) / 2, reply)
        return m.result

    def _fresh(self, now: float) -> LimiterMirror | None:
        """The mirror, re-read when older than the refresh interval; None when down."""
        m = self._mirror
        if m is None or now - m.local_t > self._store.refresh or not self._store.health.ok:
            if self._run("peek") is _DOWN:
                return None
            m = self._mirror
        return m

    @property
    def degraded(self) -> bool:
        """True while this limiter answers from local state (Redis unreachable)."""
        return not self._store.health.ok

    # -- admission --------------------------------------------------------------------
    def wait_time(self, tokens: float, now: float) -> float:
        m = self._mirror
        if m is not None and self._store.health.ok:
            w = m.wait(tokens, now)
            if w <= 0 or now - m.local_t <= self._store.refresh:
                return w  # 0: acquire will decide on the server; >0: a fresh answer
        m = self._fresh(now)
        if m is None:
            if self._store.fail_closed:
                return max(self._store.health.retry_in(), 0.01)
            return self._local.wait_time(tokens, now)
        return m.wait(tokens, now)

    def acquire(self, tokens: float, now: float) -> bool:
        res = self._run("acquire", _num(tokens))
        if res is _DOWN:
            ok = False if self._store.fail_closed else self._local.acquire(tokens, now)
        else:
            ok = res is not None and res <= 0
        if ok:
            self._learner.book(tokens, now)
        return ok

    def reconcile(self, estimated: float, actual: float, now: float, *,
                  acquired_at: float | None = None) -> None:
        self._learner.reconcile(estimated, actual, now, acquired_at=acquired_at)
        delta = estimated - actual
        if delta == 0 or (self._mirror is not None and self._mirror.tr is None
                          and self._store.health.ok):
            return
        elapsed = None if acquired_at is None else now - acquired_at
        if self._run("reconcile", _num(delta), _num(elapsed)) is _DOWN:
            self._local.reconcile(estimated, actual, now, acquired_at=acquired_at)

    def release_unsent(self, tokens: float, now: float, *,
                       acquired_at: float | None = None) -> None:
        self._learner.release_unsent(tokens, now, acquired_at=acquired_at)
        elapsed = None if acquired_at is None else now - acquired_at
        if self._run("release", _num(tokens), _num(elapsed)) is _DOWN:
            self._local.release_unsent(tokens, now, acquired_at=acquired_at)

    # -- learning ---------------------------------------------------------------------
    def observe(self, info: Any, now: float, *, sent_at: float | None = None) -> None:
        self._learner.observe(info, now, sent_at=sent_at)
        figures = self._learner.binding()
        if sent_at is not None and sent_at < now:
            info = self._as_of_now(info, now - sent_at)
        if self._unchanged_by(info, now, figures):
            return
        res = self._run("observe",
                        _num(info.limit_requests), _num(info.remaining_requests),
                        _num(info.reset_requests), _num(info.request_window),
                        _num(info.limit_tokens), _num(info.remaining_tokens),
                        _num(info.reset_tokens), _num(info.token_window),
                        *(_num(f) for f in figures), "1" if self._learner.learned else "")
        if res is _DOWN:
            self._local.observe(info, now)

    def _as_of_now(self, info: Any, age: float) -> Any:
        """``remaining`` was counted ``age`` seconds ago and rounded down: what it proves
        now is at most ``remaining + 1 + refill since``.  (Unlike the core limiter, the
        requests sent since are not subtracted: other processes share the bucket, and the
        script's own accounting already books them.)  A ``remaining`` of 0 is kept, so the
        script still starts its cooldown."""
        import attrs

        m = self._mirror
        changes = {}
        for field, rate in (("remaining_requests", None if m is None else m.rr),
                            ("remaining_tokens", None if m is None else m.tr)):
            value = getattr(info, field)
            if value is not None and value > 0:
                changes[field] = value + 1.0 + (rate or 0.0) * age
        return attrs.evolve(info, **changes) if changes else info

    def _unchanged_by(self, info: Any, now: float, figures: tuple) -> bool:
        """Would ``observe(info)`` change nothing?  Then skip the round trip.  True only
        when the shared bucket already has the learned rates and capacities and
        ``remaining`` is positive and not below the (optimistic) mirrored level."""
        m = self._mirror
        if m is None or not self._store.health.ok or (self._learner.learned and not m.learned):
            return False
        for have, want in zip((m.rr, m.rc, m.tr, m.tc), figures):
            if want is not None and (have is None or not math.isclose(have, want)):
                return False
        for level, remaining in ((m.request_level(now), info.remaining_requests),
                                 (m.token_level(now), info.remaining_tokens)):
            if remaining is not None and (remaining <= 0 or level is None or remaining < level):
                return False
        if info.remaining_requests is not None and info.remaining_requests > m.peak_remaining:
            return False  # the shared peak (kept for the snapshot)
        return True

    def observe_429(self, retry_after: float | None, now: float) -> None:
        self._learner.observe_429(retry_after, now)
        wait = retry_after
        if retry_after is not None:
            # the core's reading of the hint (a whole-second one waits one refill step)
            wait = self._learner.cooldown(now)
        rate, cap = self._learner.binding()[:2]
        if self._run("o429", _num(wait), _num(rate), _num(cap)) is _DOWN:
            self._local.observe_429(retry_after, now)

    def observe_success(self, now: float) -> None:
        self._learner.observe_success(now)
        m = self._mirror
        if m is not None and m.n429 == 0 and self._store.health.ok:
            return  # nothing to reset: no round trip
        if self._run("ok") is _DOWN:
            self._local.observe_success(now)

    # -- inspection -------------------------------------------------------------------
    def cooldown(self, now: float) -> float:
        m = self._fresh(now)
        return self._local.cooldown(now) if m is None else m.cooldown(now)

    def headroom(self, now: float) -> float:
        m = self._mirror if self._store.health.ok else None
        if m is None:
            if self._store.fail_closed:
                return 0.0
            return self._local.headroom(now)
        if m.cooldown(now) > 0:
            return 0.0
        level = m.request_level(now)
        if level is None:
            return 1.0
        return min(1.0, max(0.0, level / m.rc))

    @property
    def requests_per_minute(self) -> float | None:
        m = self._mirror
        return self._local.requests_per_minute if m is None or m.rr is None else m.rr * 60.0

    @property
    def tokens_per_minute(self) -> float | None:
        m = self._mirror
        return self._local.tokens_per_minute if m is None or m.tr is None else m.tr * 60.0

    @property
    def learned(self) -> bool:
        m = self._mirror
        return self._local.learned if m is None else m.learned

    def snapshot(self, now: float) -> dict:
        m = self._fresh(now)
        if m is None:
            snap = self._local.snapshot(now)
        else:
            snap = {
                "requests_per_minute": None if m.rr is None else m.rr * 60.0,
                "tokens_per_minute": None if m.tr is None else m.tr * 60.0,
                "request_level": m.request_level(now),
                "token_level": m.token_level(now),
                "cooldown": m.cooldown(now),
                "learned": m.learned,
            }
            # what this process's learner found, and where each figure came from
            mine = self._learner.snapshot(now)
            snap["requests"], snap["tokens"] = mine["requests"], mine["tokens"]
        snap["shared"] = True
        snap["degraded"] = m is None
        return snap

    def __repr__(self) -> str:
        return f"RedisLimiter({self._key!r}, degraded={self.degraded})"
