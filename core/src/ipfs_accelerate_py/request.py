"""The request a caller submits to the pipeline."""

from __future__ import annotations

import enum
import itertools
import os
import types
import uuid
from typing import Any, Mapping

import attrs

from .errors import ConfigError


class Priority(enum.IntEnum):
    """Scheduling priority: lower runs first.  Values match the original system (0/1/2)."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


def _priority(value: Any) -> Priority:
    if isinstance(value, str):
        try:
            return Priority[value.upper()]
        except KeyError:
            raise ConfigError("priority", f"unknown priority {value!r}; use HIGH, NORMAL or LOW") from None
    try:
        return Priority(value)
    except (ValueError, TypeError):
        raise ConfigError("priority", f"unknown priority {value!r}; use HIGH, NORMAL or LOW") from None


def _deadline(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ConfigError("deadline", f"must be > 0 seconds, got {value!r}")


def _cache_flag(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in (None, True, False, "refresh") or isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError("cache", f"must be None, True, False or 'refresh', got {value!r}")


_NO_TAGS: Mapping[str, Any] = types.MappingProxyType({})  # shared: most requests have none
_ID_MASK = (1 << 48) - 1


def _new_id_source() -> tuple[str, itertools.count]:
    # The first 80 bits of a random UUID (its version and variant bits included) and a
    # counter from a random start in the last 48 bits: every id is a valid
    # version-4-shaped UUID, and ids of different processes or runs do not line up.
    hexed = uuid.uuid4().hex
    return hexed[:20], itertools.count(int(hexed[20:], 16))


_ID_PREFIX, _ID_COUNTER = _new_id_source()


def _reseed_after_fork() -> None:
    # A forked child would otherwise hand out its parent's ids from the same counter.
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = _new_id_source()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


def new_request_id() -> str:
    """A unique, UUID-shaped request id (``8-4-4-4-12`` hex digits; servers that check the
    header's shape accept it): a random per-process prefix and a counter, since a uuid4
    per request costs a getrandom() system call, which is slow on some kernels."""
    p = _ID_PREFIX
    return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{p[16:20]}-{next(_ID_COUNTER) & _ID_MASK:012x}"


@attrs.frozen
class Request:
    """One unit of work: call ``operation`` of ``backend`` with ``payload``.

    ``deadline`` is seconds from submission for everything (queueing, retries, the call);
    ``None`` takes the client's default.  ``key`` pins the request to one key by its name.
    ``stream`` asks for a :class:`~ipfs_accelerate_py.results.ResultStream`.
    """

    operation: str
    payload: Mapping[str, Any] = attrs.field(factory=dict)
    backend: str | None = None
    priority: Priority = attrs.field(default=Priority.NORMAL, converter=_priority)
    deadline: float | None = attrs.field(default=None, validator=_deadline)
    request_id: str = attrs.field(factory=new_request_id)
    key: str | None = None
    stream: bool = False
    #: Free-form caller data, carried to events (never sent to the provider).
    tags: Mapping[str, Any] = attrs.field(factory=lambda: _NO_TAGS)
    #: Response cache: None follows the backend and client; True uses it, False bypasses
    #: it, "refresh" skips the lookup and writes the new answer (docs/caching.md).
    cache: bool | str | None = attrs.field(default=None, validator=_cache_flag)

    def evolve(self, **changes: Any) -> Request:
        return attrs.evolve(self, **changes)
