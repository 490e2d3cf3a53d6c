"""A :class:`~ipfs_accelerate_py.breaker.CircuitBreaker` whose state lives in Redis.

Every process sharing the Redis sees one CLOSED / OPEN / HALF_OPEN state per endpoint,
one failure window and one set of half-open trial slots; transitions run inside one
atomic script with the server's clock.  Each process calls ``on_transition`` for every
transition it observes (its own, and those made by others when it next reads the state).

Round trips: ``record_failure`` / ``record_neutral`` one each; ``record_success`` while
CLOSED is deferred and sent with the next call (at the latest when the state is re-read,
every ``refresh`` seconds), so a steady stream of successes costs no round trip per
request.  Deferred successes are counted before the call that carries them (a process's
own order is kept) and only if the breaker is still CLOSED in their epoch.  ``state``, ``can_dispatch``, ``time_until_dispatch``
and ``on_dispatch`` answer from the last state read while it is CLOSED and younger than the
store's ``refresh`` interval, or OPEN with time left; HALF_OPEN is always read (its trial
slots are scarce).  An epoch read from a slightly stale CLOSED state only makes that call's
outcome ignored if the breaker moved meanwhile -- the stale-outcome rule of the core.

While Redis is unreachable a local breaker takes over.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ipfs_accelerate_py.breaker import HALF_OPEN_POLL, CircuitBreaker, TransitionCallback
from ipfs_accelerate_py.config import BreakerPolicy
from ipfs_accelerate_py.state import Breaker

if TYPE_CHECKING:  # pragma: no cover
    from .store import RedisStateStore

_DOWN = object()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisBreaker(Breaker):
    CLOSED = CircuitBreaker.CLOSED
    OPEN = CircuitBreaker.OPEN
    HALF_OPEN = CircuitBreaker.HALF_OPEN

    def __init__(self, store: RedisStateStore, redis_key: str, endpoint: str,
                 policy: BreakerPolicy, on_transition: TransitionCallback | None = None) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.on_transition = on_transition
        self._store = store
        self._key = redis_key
        p = policy
        self._args = [str(p.window_size), str(p.minimum_calls), repr(float(p.failure_rate_threshold)),
                      repr(float(p.open_interval)), repr(float(p.interval_multiplier)),
                      repr(float(p.max_open_interval)), str(p.half_open_trials),
                      str(int(store.ttl * 1000))]
        self._local = CircuitBreaker(endpoint, policy, self._local_transition)
        self._known = self.CLOSED  # the last state reported through on_transition
        self._state = self.CLOSED
        self._epoch = 0
        self._open_until = 0.0  # local monotonic time
        self._trials = 0
        self._trips = 0
        self._failures = 0
        self._calls = 0
        self._read_at = -1e300
        self._deferred = 0  # successes recorded while CLOSED in epoch self._deferred_epoch
        self._deferred_epoch = 0
        self._run("peek", time.monotonic())

    # -- plumbing ---------------------------------------------------------------------
    def _notify(self, old: str, new: str, now: float) -> None:
        self._known = new
        if old != new and self.on_transition is not None:
            self.on_transition(self.endpoint, old, new, now)

    def _local_transition(self, endpoint: str, old: str, new: str, now: float) -> None:
        self._notify(self._known, new, now)

    def _run(self, op: str, now: float, epoch: int | None = None) -> Any:
        store = self._store
        if not store.health.usable():
            return _DOWN
        t0 = time.monotonic()
        deferred, self._deferred = self._deferred, 0
        try:
            r = store.breaker_script(keys=[self._key], args=[
                op, *self._args, "" if epoch is None else str(epoch), str(deferred),
                str(self._deferred_epoch)])
        except store.down_errors as exc:
            store.health.failed(exc, store.fallback_description)
            # Continue locally from the state last seen, so an open breaker stays open.
            return _DOWN
        store.health.succeeded()
        t = (t0 + time.monotonic()) / 2
        before, st = _s(r[0]), _s(r[1])
        self._state, self._epoch = st, int(r[2])
        self._open_until = t + float(_s(r[3]))
        self._trials, self._trips = int(r[4]), int(r[5])
        self._failures, self._calls = int(r[6]), int(r[7])
        self._read_at = t
        # Transitions made elsewhere since we last looked, then our own.
        if before != self._known:
            self._notify(self._known, before, now)
        moves = _s(r[8])
        for move in moves.split(",") if moves else ():
            old, new = move.split(">")
            self._notify(old, new, now)
        return _s(r[9])

    def _read(self, now: float) -> bool:
        """Make the cached state current enough; False when Redis is unreachable."""
        if not self._store.health.ok and not self._store.health.usable():
            return False
        fresh = now - self._read_at <= self._store.refresh
        if self._store.health.ok and (
                (self._state == self.CLOSED and fresh)
                or (self._state == self.OPEN and now < self._open_until)):
            return True
        return self._run("peek", now) is not _DOWN

    @property
    def degraded(self) -> bool:
        return not self._store.health.ok

    # -- the CircuitBreaker interface ---------------------------------------------------
    def state(self, now: float) -> str:
        if not self._read(now):
            return self._local.state(now)
        return self._state

    def can_dispatch(self, now: float) -> bool:
        if not self._read(now):
            return self._local.can_dispatch(now)
        if self._state == self.CLOSED:
            return True
        if self._state == self.HALF_OPEN:
            return self._trials < self.policy.half_open_trials
        return False

    def on_dispatch(self, now: float) -> int:
        if self._store.health.ok and self._state == self.CLOSED \
                and now - self._read_at <= self._store.refresh:
            return self._epoch
        res = self._run("dispatch", now)
        if res is _DOWN:
            return self._local.on_dispatch(now)
        return int(res)

    def time_until_dispatch(self, now: float) -> float:
        if not self._read(now):
            return self._local.time_until_dispatch(now)
        if self.can_dispatch(now):
            return 0.0
        if self._state == self.OPEN:
            return max(0.0, self._open_until - now)
        return HALF_OPEN_POLL

    def _record(self, op: str, now: float, epoch: int | None) -> None:
        if self._run(op, now, epoch) is _DOWN:
            getattr(self._local, "record_" + op)(now, epoch)

    def record_success(self, now: float, epoch: int | None = None) -> None:
        if (self._store.health.ok and self._state == self.CLOSED
                and (epoch is None or epoch == self._epoch)
                and self._deferred < self.policy.window_size):
            if self._deferred == 0:
                self._deferred_epoch = self._epoch
            if self._deferred_epoch == self._epoch:
                self._deferred += 1
                return
        self._record("success", now, epoch)

    def record_failure(self, now: float, epoch: int | None = None) -> None:
        self._record("failure", now, epoch)

    def record_neutral(self, now: float, epoch: int | None = None) -> None:
        self._record("neutral", now, epoch)

    # -- inspection -------------------------------------------------------------------
    @property
    def trips(self) -> int:
        return self._local.trips if self.degraded else self._trips

    @property
    def epoch(self) -> int:
        return self._local.epoch if self.degraded else self._epoch

    @property
    def current_open_interval(self) -> float:
        return self._local.current_open_interval  # informational; the policy's shape

    def snapshot(self, now: float) -> dict:
        if self._run("peek", now) is _DOWN:
            snap = self._local.snapshot(now)
            snap["degraded"] = True
            return snap
        return {
            "state": self._state,
            "failure_rate": self._failures / self._calls if self._calls else 0.0,
            "calls_in_window": self._calls,
            "open_for": max(0.0, self._open_until - now) if self._state == self.OPEN else 0.0,
            "trips": self._trips,
            "degraded": False,
        }

    def __repr__(self) -> str:
        return f"RedisBreaker({self.endpoint!r}, state={self._state!r}, trips={self._trips})"
