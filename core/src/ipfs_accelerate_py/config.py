"""Frozen, validated configuration objects (one clear policy object per concern).

Every field is checked at construction: a zero, negative or otherwise impossible value
raises :class:`~ipfs_accelerate_py.errors.ConfigError` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import attrs

from .errors import RETRYABLE, ConfigError, ErrorClass
from .keys import ApiKey, as_api_key


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ConfigError(attribute.name, f"must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ConfigError(attribute.name, f"must be >= 0, got {value!r}")


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(attribute.name, f"must be within [0, 1], got {value!r}")


def _at_least_one(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 1:
        raise ConfigError(attribute.name, f"must be >= 1, got {value!r}")


def _error_classes(value: Iterable[ErrorClass | str]) -> frozenset[ErrorClass]:
    try:
        return frozenset(ErrorClass(v) for v in value)
    except ValueError as exc:
        raise ConfigError("retry_on", str(exc)) from None


@attrs.frozen
class RetryPolicy:
    """When to try again and how long to wait (full-jitter exponential backoff).

    ``delay = uniform(0, min(max_delay, base_delay * multiplier ** (attempt - 1)))``, or the
    server's ``retry-after``/``retry-after-ms`` when it sent one (never less).  A retry that
    would land past the request's deadline is not made.  ``budget_ratio`` caps retries at
    that fraction of recent requests per backend (plus ``budget_min_per_second``), so a
    failing service is not hammered by a retry storm.
    """

    max_attempts: int = attrs.field(default=6, validator=_at_least_one)
    base_delay: float = attrs.field(default=0.2, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    max_delay: float = attrs.field(default=30.0, validator=_positive)
    jitter: bool = True
    honor_retry_after: bool = True
    max_retry_after: float = attrs.field(default=300.0, validator=_positive)
    retry_on: frozenset[ErrorClass] = attrs.field(default=RETRYABLE, converter=_error_classes)
    budget_ratio: float = attrs.field(default=0.2, validator=_non_negative)
    budget_min_per_second: float = attrs.field(default=1.0, validator=_non_negative)
    budget_window: float = attrs.field(default=10.0, validator=_positive)


@attrs.frozen
class BreakerPolicy:
    """A circuit breaker per backend endpoint.

    It opens when, among the last ``window_size`` calls (at least ``minimum_calls`` of
    them), the share of failures reaches ``failure_rate_threshold``.  Open, it refuses
    dispatch for ``open_interval`` seconds, growing by ``interval_multiplier`` on each
    consecutive trip up to ``max_open_interval``; then it lets ``half_open_trials`` calls
    through, and closes after that many successes.  Rate-limit answers (429) and client
    errors never count as failures.
    """

    window_size: int = attrs.field(default=20, validator=_at_least_one)
    minimum_calls: int = attrs.field(default=5, validator=_at_least_one)
    failure_rate_threshold: float = attrs.field(default=0.5, validator=_fraction)
    open_interval: float = attrs.field(default=1.0, validator=_positive)
    interval_multiplier: float = attrs.field(default=2.0, validator=_positive)
    max_open_interval: float = attrs.field(default=30.0, validator=_positive)
    half_open_trials: int = attrs.field(default=1, validator=_at_least_one)


def _keys(value: Iterable[Any] | None) -> tuple[ApiKey, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, ApiKey)):
        value = [value]
    return tuple(as_api_key(v) for v in value)


@attrs.frozen
class BackendConfig:
    """How to reach one backend: its keys, base URL, timeouts and per-key defaults.

    ``options`` holds backend-specific settings (an API version header, an organization,
    an S3 region...); each backend documents the ones it reads.
    """

    name: str
    keys: tuple[ApiKey, ...] = attrs.field(factory=tuple, converter=_keys)
    base_url: str | None = None
    connect_timeout: float = attrs.field(default=5.0, validator=_positive)
    read_timeout: float = attrs.field(default=120.0, validator=_positive)
    max_concurrent_per_key: int = attrs.field(default=8, validator=_at_least_one)
    requests_per_minute: float | None = attrs.field(default=None, validator=_positive)
    tokens_per_minute: float | None = attrs.field(default=None, validator=_positive)
    burst: float | None = attrs.field(default=None, validator=_positive)
    #: Wait this long for more requests to coalesce into one batch call.
    batch_window: float = attrs.field(default=0.005, validator=_non_negative)
    options: Mapping[str, Any] = attrs.field(factory=dict)


def _state_store(_inst: Any, attribute: Any, value: Any) -> None:
    if value is None or isinstance(value, str):
        if isinstance(value, str) and "://" not in value:
            raise ValueError(f"{attribute.name}: expected a URL such as memory:// or "
                             f"redis://host:6379/0, got {value!r}")
        return
    for method in ("limiter", "breaker", "close"):
        if not callable(getattr(value, method, None)):
            raise ValueError(f"{attribute.name}: {type(value).__name__} is not a state store "
                             f"(no {method}() method)")


def _is_pair(item: Any) -> bool:
    return (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            and isinstance(item[1], Mapping))


def _observers(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or _is_pair(value) or not isinstance(value, (list, tuple)):
        value = [value]  # one name, one (name, options) pair, or one observer object
    out = []
    for item in value:
        if isinstance(item, list):
            item = tuple(item)
        if isinstance(item, tuple) and not _is_pair(item):
            raise ValueError(f"observers: expected a name, (name, options) or an observer, "
                             f"got {item!r}")
        out.append(item)
    return tuple(out)


@attrs.frozen
class ClientConfig:
    """The pipeline's global settings."""

    max_concurrency: int = attrs.field(default=16, validator=_at_least_one)
    queue_size: int | None = attrs.field(default=10_000, validator=_at_least_one)
    block_when_full: bool = False
    #: Seconds a request may take in all (queue + attempts); None waits without limit.
    default_deadline: float | None = attrs.field(default=600.0, validator=_positive)
    #: Key-selection strategy by name; None takes "least-loaded" when that plugin is
    #: installed, else the core's built-in "first-available".
    strategy: str | None = None
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy)
    #: Fail requests at once when their endpoint's breaker is open (default: wait in queue).
    fail_fast: bool = False
    #: Send the pipeline's request id as a header where the backend accepts one.
    send_request_id: bool = True
    latency_samples: int = attrs.field(default=10_000, validator=_at_least_one)
    #: Where limiters and breakers live: None (the ``IPFS_ACCELERATE_STATE_STORE``
    #: environment variable, else memory), a URL resolved by its scheme through
    #: ``accelerate_make_state_store`` (``memory://``, ``redis://host:6379/0`` with the
    #: Redis extra), or a StateStore object (shared: the client never closes it).
    state_store: Any = attrs.field(default=None, validator=_state_store)
    #: Who watches this client's events: names resolved through
    #: ``accelerate_make_observer``, ``(name, options)`` pairs, or observer objects (any
    #: object with some ``accelerate_on_*(event)`` methods).  Names in the
    #: ``IPFS_ACCELERATE_OBSERVERS`` environment variable (comma-separated) are added.
    observers: tuple[Any, ...] = attrs.field(default=(), converter=_observers)
