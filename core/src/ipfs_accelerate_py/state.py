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

__all__ = ["Counter", "LocalCounter", "StateStore", "InMemoryStateStore", "SharedStore"]


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
    """The one small interface a shared store (e.g. Redis) replaces.

    Each accessor returns the same object for the same name for the store's lifetime;
    construction arguments are used when the object is first created and ignored after.
    Accessors are thread-safe.  The returned limiters and breakers are *not* themselves
    thread-safe (the pipeline calls them under its lock); counters are.
    """

    @abc.abstractmethod
    def limiter(self, scope: str, requests_per_minute: float | None,
                tokens_per_minute: float | None, burst: float | None,
                now: float) -> KeyLimiter | Any:
        """The rate limiter of ``scope`` (typically ``backend:key_id``)."""

    @abc.abstractmethod
    def breaker(self, endpoint: str, policy: BreakerPolicy,
                on_transition: TransitionCallback | None = None) -> CircuitBreaker | Any:
        """The circuit breaker of a backend endpoint."""

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
