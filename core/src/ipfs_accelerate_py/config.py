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
    #: Bound of every attempt in all (sending, waiting, reading the body or stream);
    #: None: only the request's deadline and ``read_timeout`` per read bound it.
    attempt_timeout: float | None = attrs.field(default=None, validator=_positive)
    #: Bound of an answer's size after decompression (a stream's total); over it, the
    #: request fails with ``ResponseTooLarge`` (never retried).
    max_response_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_at_least_one)
    #: Bound of one line (an SSE line, an NDJSON object) of a streamed answer.
    max_line_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_at_least_one)
    options: Mapping[str, Any] = attrs.field(factory=dict)


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
