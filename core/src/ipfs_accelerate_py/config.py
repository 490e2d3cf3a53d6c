"""Frozen, validated configuration objects (one clear policy object per concern).

Every field is checked at construction: a zero, negative or otherwise impossible value
raises :class:`~ipfs_accelerate_py.errors.ConfigError` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import attrs

from .errors import RETRYABLE, ConfigError, ErrorClass
from .keys import ApiKey, as_api_key
from .redaction import redact_url


def _real(name: str, value: Any) -> float:
    """A finite real number (never a bool, a string, nan or inf), or a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(name, f"must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    """An integer (``3`` or ``3.0`` is fine, ``2.5`` is not)."""
    number = _real(name, value)
    if not isinstance(value, numbers.Integral) and not number.is_integer():
        raise ConfigError(name, f"must be a whole number, got {value!r}")
    return int(number)


def _absent(attribute: attrs.Attribute, value: Any) -> bool:
    """None is fine only where the field's type says ``| None``."""
    if value is not None:
        return False
    if "None" in str(attribute.type):
        return True
    raise ConfigError(attribute.name, "must be set, got None")


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a finite number > 0 (or None where the type allows it)."""
    if not _absent(attribute, value) and not _real(attribute.name, value) > 0:
        raise ConfigError(attribute.name, f"must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a finite number >= 0 (or None where the type allows it)."""
    if not _absent(attribute, value) and _real(attribute.name, value) < 0:
        raise ConfigError(attribute.name, f"must be >= 0, got {value!r}")


def fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a finite number within [0, 1]."""
    if not 0.0 <= _real(attribute.name, value) <= 1.0:
        raise ConfigError(attribute.name, f"must be within [0, 1], got {value!r}")


def at_least_one(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a whole number >= 1 (or None where the type allows it)."""
    if not _absent(attribute, value) and _count(attribute.name, value) < 1:
        raise ConfigError(attribute.name, f"must be >= 1, got {value!r}")


def _as_int(value: Any) -> Any:
    """Store whole floats (``4.0``) as ints; anything else is left to the validator."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _flag(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(attribute.name, f"must be true or false, got {value!r}")


def _text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(attribute.name, f"must be a non-empty string, got {value!r}")


def _instance_of(kind: type) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, kind):
            raise ConfigError(attribute.name, f"must be a {kind.__name__}, got "
                                              f"{type(value).__name__}")

    return check


def _base_url(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An absolute http(s) URL with a host, found bad now rather than at the first call."""
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError("base_url", f"must be a URL string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as exc:
        raise ConfigError("base_url", f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("base_url", f"{value!r} is not an http(s) URL with a host "
                                      f"(e.g. https://api.example.com/v1)")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ConfigError("base_url", "contains whitespace or control characters")


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

    max_attempts: int = attrs.field(default=6, converter=_as_int, validator=at_least_one)
    base_delay: float = attrs.field(default=0.2, validator=positive)
    multiplier: float = attrs.field(default=2.0, validator=positive)
    max_delay: float = attrs.field(default=30.0, validator=positive)
    jitter: bool = attrs.field(default=True, validator=_flag)
    honor_retry_after: bool = attrs.field(default=True, validator=_flag)
    max_retry_after: float = attrs.field(default=300.0, validator=positive)
    retry_on: frozenset[ErrorClass] = attrs.field(default=RETRYABLE, converter=_error_classes)
    budget_ratio: float = attrs.field(default=0.2, validator=non_negative)
    budget_min_per_second: float = attrs.field(default=1.0, validator=non_negative)
    budget_window: float = attrs.field(default=10.0, validator=positive)


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

    window_size: int = attrs.field(default=20, converter=_as_int, validator=at_least_one)
    minimum_calls: int = attrs.field(default=5, converter=_as_int, validator=at_least_one)
    failure_rate_threshold: float = attrs.field(default=0.5, validator=fraction)
    open_interval: float = attrs.field(default=1.0, validator=positive)
    interval_multiplier: float = attrs.field(default=2.0, validator=positive)
    max_open_interval: float = attrs.field(default=30.0, validator=positive)
    half_open_trials: int = attrs.field(default=1, converter=_as_int, validator=at_least_one)


def _keys(value: Iterable[Any] | None) -> tuple[ApiKey, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, ApiKey)):
        value = [value]
    try:
        return tuple(as_api_key(v) for v in value)
    except TypeError as exc:
        raise ConfigError("keys", f"must be keys (strings or ApiKey), got {exc}") from None


@attrs.frozen
class BackendConfig:
    """How to reach one backend: its keys, base URL, timeouts and per-key defaults.

    ``options`` holds backend-specific settings (an API version header, an organization,
    an S3 region...); each backend documents the ones it reads.
    """

    name: str = attrs.field(validator=_text)
    keys: tuple[ApiKey, ...] = attrs.field(factory=tuple, converter=_keys)
    #: Shown without user info or query string (they may hold credentials).
    base_url: str | None = attrs.field(
        default=None, validator=_base_url, repr=lambda u: repr(u if u is None else redact_url(u)))
    connect_timeout: float = attrs.field(default=5.0, validator=positive)
    read_timeout: float = attrs.field(default=120.0, validator=positive)
    max_concurrent_per_key: int = attrs.field(default=8, converter=_as_int, validator=at_least_one)
    requests_per_minute: float | None = attrs.field(default=None, validator=positive)
    tokens_per_minute: float | None = attrs.field(default=None, validator=positive)
    burst: float | None = attrs.field(default=None, validator=positive)
    #: Wait this long for more requests to coalesce into one batch call.
    batch_window: float = attrs.field(default=0.005, validator=non_negative)
    #: Bound of every attempt in all (sending, waiting, reading the body or stream);
    #: None: only the request's deadline and ``read_timeout`` per read bound it.
    attempt_timeout: float | None = attrs.field(default=None, validator=positive)
    #: Bound of an answer's size after decompression (a stream's total); over it, the
    #: request fails with ``ResponseTooLarge`` (never retried).
    max_response_bytes: int = attrs.field(default=64 * 1024 * 1024, converter=_as_int,
                                          validator=at_least_one)
    #: Bound of one line (an SSE line, an NDJSON object) of a streamed answer.
    max_line_bytes: int = attrs.field(default=8 * 1024 * 1024, converter=_as_int,
                                      validator=at_least_one)
    options: Mapping[str, Any] = attrs.field(factory=dict, validator=_instance_of(Mapping))
    #: Response caching for this backend: None follows ``ClientConfig.cache``'s
    #: ``enabled``; True / False turn it on or off here (docs/caching.md).
    cache: bool | None = attrs.field(default=None, validator=attrs.validators.optional(_flag))


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


def _budgets(value: Any) -> tuple[Any, ...]:
    """One budget or several; each is checked to be a Budget when the client is built."""
    if value is None:
        return ()
    if hasattr(value, "limit") and hasattr(value, "window"):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise ConfigError("budgets", f"expected Budget objects, got {type(value).__name__}") from None
def _cache_config(value: Any) -> Any:
    from .caching.config import as_cache_config

    return as_cache_config(value)


@attrs.frozen
class ClientConfig:
    """The pipeline's global settings."""

    max_concurrency: int = attrs.field(default=16, converter=_as_int, validator=at_least_one)
    queue_size: int | None = attrs.field(default=10_000, converter=_as_int, validator=at_least_one)
    block_when_full: bool = attrs.field(default=False, validator=_flag)
    #: Seconds a request may take in all (queue + attempts); None waits without limit.
    default_deadline: float | None = attrs.field(default=600.0, validator=positive)
    #: Key-selection strategy by name; None takes "least-loaded" when that plugin is
    #: installed, else the core's built-in "first-available".
    strategy: str | None = attrs.field(default=None, validator=_text)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy, validator=_instance_of(RetryPolicy))
    breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy,
                                         validator=_instance_of(BreakerPolicy))
    #: Fail requests at once when their endpoint's breaker is open (default: wait in queue).
    fail_fast: bool = attrs.field(default=False, validator=_flag)
    #: Send the pipeline's request id as a header where the backend accepts one.
    send_request_id: bool = attrs.field(default=True, validator=_flag)
    latency_samples: int = attrs.field(default=10_000, converter=_as_int, validator=at_least_one)
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
    #: Price overrides (docs/costs.md): a path to a JSON price file, or a mapping
    #: ``{backend: {model: {"input": "0.15", "output": "0.60"}}}`` (dollars per 1M tokens).
    prices: Any = None
    #: Spending limits: :class:`~ipfs_accelerate_py.costs.Budget` objects.
    budgets: tuple[Any, ...] = attrs.field(default=(), converter=lambda v: _budgets(v))
    #: Response caching (docs/caching.md): None (off), True (in memory), a store URL
    #: (``memory://``, ``sqlite:///path``, ``redis://...``), a store object, or a
    #: :class:`~ipfs_accelerate_py.caching.CacheConfig`.
    cache: Any = attrs.field(default=None, converter=_cache_config)
