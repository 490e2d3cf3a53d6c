"""Where the pipeline's shared state lives: limiters, breakers and counters.

The pipeline never builds these itself; it asks a :class:`StateStore`.  In one process
:class:`InMemoryStateStore` keeps plain objects.  When several processes or hosts share a
provider quota, a shared store (Redis, in contrib) implements the same small interface,
returning objects with the same methods whose state lives server-side, so the pipeline
does not change.
"""

from __future__ import annotations

import abc
import threading
from typing import Any, Protocol, runtime_checkable

from .breaker import CircuitBreaker, TransitionCallback
from .config import BreakerPolicy
from .limiter import KeyLimiter

__all__ = ["Breaker", "Counter", "Limiter", "LocalCounter", "StateStore", "InMemoryStateStore",
           "SharedStore"]


@runtime_checkable
class Limiter(Protocol):
    """What the pipeline asks of a key's rate limiter (``KeyLimiter`` in memory,
    ``RedisLimiter`` shared).  Called under the pipeline's lock; ``now`` is the pipeline's
    clock; ``tokens`` an estimate that :meth:`reconcile` corrects."""

    def wait_time(self, tokens: float, now: float) -> float:
        """Seconds until ``tokens`` (0: one request) could be admitted; 0 when now."""

    def acquire(self, tokens: float, now: float) -> bool:
        """Admit one request of ``tokens`` now, or say no (nothing taken)."""

    def release_unsent(self, tokens: float, now: float, *,
                       acquired_at: float | None = None) -> None:
        """An admitted request was never sent: give its request and tokens back."""

    def reconcile(self, estimated: float, actual: float, now: float, *,
                  acquired_at: float | None = None) -> None:
        """The true usage of an admitted request is known: correct the estimate."""

    def observe(self, info: Any, now: float, *, sent_at: float | None = None) -> None:
        """The provider's rate-limit headers of a response (``RateLimitInfo``);
        ``sent_at`` is when the request was admitted, so a ``remaining`` counted back then
        is read for what it proves now."""

    def observe_429(self, retry_after: float | None, now: float) -> None:
        """The provider refused a request with 429 (and maybe a Retry-After)."""

    def observe_success(self, now: float) -> None:
        """A request through this key succeeded."""

    def headroom(self, now: float) -> float:
        """The share (0..1) of the request budget available now (for strategies)."""

    def snapshot(self, now: float) -> dict:
        """The limiter's state for stats (``requests_per_minute``, ``tokens_per_minute``...)."""


@runtime_checkable
class Breaker(Protocol):
    """What the pipeline asks of an endpoint's circuit breaker (``CircuitBreaker`` in
    memory, ``RedisBreaker`` shared).  Called under the pipeline's lock.  ``epoch``, from
    :meth:`on_dispatch`, lets a breaker ignore outcomes of attempts sent before its last
    transition."""

    def state(self, now: float) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""

    def can_dispatch(self, now: float) -> bool:
        """Whether an attempt may be sent now."""

    def on_dispatch(self, now: float) -> int:
        """An attempt is being sent; its epoch."""

    def time_until_dispatch(self, now: float) -> float:
        """Seconds until an attempt may be sent; 0 when now."""

    def record_success(self, now: float, epoch: int | None = None) -> None:
        """The attempt of ``epoch`` succeeded."""

    def record_failure(self, now: float, epoch: int | None = None) -> None:
        """The attempt of ``epoch`` failed in a way that counts (5xx, timeout...)."""

    def record_neutral(self, now: float, epoch: int | None = None) -> None:
        """The attempt of ``epoch`` ended with neither (429, client error, plugin error)."""

    def snapshot(self, now: float) -> dict:
        """The breaker's state for stats."""


@runtime_checkable
class Counter(Protocol):
    """A thread-safe integer: in-flight counts per key, stats counters."""

    def incr(self, n: int = 1) -> int:
        """Add ``n``; return the new value."""

    def decr(self, n: int = 1) -> int:
        """Subtract ``n``; return the new value."""

    def value(self) -> int:
        """The current value."""


class LocalCounter:
    """An in-process :class:`Counter` guarded by its own lock."""

    __slots__ = ("_value", "_lock")

    def __init__(self, value: int = 0) -> None:
        self._value = value
        self._lock = threading.Lock()

    def incr(self, n: int = 1) -> int:
        with self._lock:
            self._value += n
            return self._value

    def decr(self, n: int = 1) -> int:
        with self._lock:
            self._value -= n
            return self._value

    def value(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"LocalCounter({self._value})"


class StateStore(abc.ABC):
    """The one small interface a shared store (e.g. Redis) replaces: it holds the rate
    limiters (:class:`Limiter`) and circuit breakers (:class:`Breaker`) of a client, and
    named counters.  Key slots, the queue and the stats stay in the client.

    Each accessor returns the same object for the same name for the store's lifetime;
    construction arguments are used when the object is first created and ignored after.
    Accessors are thread-safe.  The returned limiters and breakers are *not* themselves
    thread-safe (the pipeline calls them under its lock); counters are.
    """

    @abc.abstractmethod
    def limiter(self, scope: str, requests_per_minute: float | None,
                tokens_per_minute: float | None, burst: float | None,
                now: float) -> Limiter:
        """The rate limiter of ``scope`` (``backend/key_id``)."""

    @abc.abstractmethod
    def breaker(self, endpoint: str, policy: BreakerPolicy,
                on_transition: TransitionCallback | None = None) -> Breaker:
        """The circuit breaker of a backend endpoint; ``on_transition(endpoint, old, new,
        now)`` is called on each of its state changes."""

    @abc.abstractmethod
    def counter(self, name: str) -> Counter:
        """A named counter."""

    def close(self) -> None:
        """Release connections; the default has none."""


class SharedStore(StateStore):
    """A store lent to clients, never closed by them (``shared = True``): for a hook
    that hands the same store to several clients.  Everything else goes to ``store``."""

    shared = True

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def limiter(self, scope: str, requests_per_minute: float | None,
                tokens_per_minute: float | None, burst: float | None, now: float) -> Any:
        return self.store.limiter(scope, requests_per_minute, tokens_per_minute, burst, now)

    def breaker(self, endpoint: str, policy: BreakerPolicy,
                on_transition: TransitionCallback | None = None) -> Any:
        return self.store.breaker(endpoint, policy, on_transition)

    def counter(self, name: str) -> Counter:
        return self.store.counter(name)

    def close(self) -> None:
        pass  # the lender closes it

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __repr__(self) -> str:
        return f"SharedStore({self.store!r})"


class InMemoryStateStore(StateStore):
    """The default store: dictionaries in this process, a lock only for creation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[str, KeyLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._counters: dict[str, LocalCounter] = {}

    def limiter(self, scope: str, requests_per_minute: float | None,
                tokens_per_minute: float | None, burst: float | None,
                now: float) -> KeyLimiter:
        found = self._limiters.get(scope)
        if found is not None:
            return found
        with self._lock:
            found = self._limiters.get(scope)
            if found is None:
                found = self._limiters[scope] = KeyLimiter(
                    now, requests_per_minute, tokens_per_minute, burst)
            return found

    def breaker(self, endpoint: str, policy: BreakerPolicy,
                on_transition: TransitionCallback | None = None) -> CircuitBreaker:
        found = self._breakers.get(endpoint)
        if found is not None:
            return found
        with self._lock:
            found = self._breakers.get(endpoint)
            if found is None:
                found = self._breakers[endpoint] = CircuitBreaker(endpoint, policy, on_transition)
            return found

    def counter(self, name: str) -> LocalCounter:
        found = self._counters.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._counters.get(name)
            if found is None:
                found = self._counters[name] = LocalCounter()
            return found

    def counters(self) -> dict[str, int]:
        """Every counter's current value (for stats)."""
        with self._lock:
            items = list(self._counters.items())
        return {name: c.value() for name, c in items}

    def close(self) -> None:
        pass
