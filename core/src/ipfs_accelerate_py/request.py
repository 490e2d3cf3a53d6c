"""The request a caller submits to the pipeline."""

from __future__ import annotations

import enum
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


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


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
    tags: Mapping[str, Any] = attrs.field(factory=dict)

    def evolve(self, **changes: Any) -> Request:
        return attrs.evolve(self, **changes)
