"""Frozen monitoring events, handed to the monitoring hooks.

Events carry a key's public ``key_id`` only, never the key.
"""

from __future__ import annotations

import enum
from typing import Any, Mapping

import attrs

from .redaction import redact
from .results import Usage


def _redacted(text: str | None) -> str | None:
    return None if text is None else redact(text)


class Outcome(str, enum.Enum):
    SUCCESS = "success"
    ERROR = "error"  # a classified provider error, not retried further
    DEADLINE = "deadline"  # its deadline passed (in the queue or between attempts)
    CANCELLED = "cancelled"  # cancelled by the caller or by close()
    PLUGIN_ERROR = "plugin_error"  # a hook raised; the request failed with PluginError


@attrs.frozen
class RequestQueued:
    request_id: str
    backend: str
    operation: str
    priority: int
    queue_depth: int
    time: float
    # Optional, for tracing (OpenTelemetry GenAI conventions); None until the pipeline
    # fills them.  ``payload`` is the request's content: observers must not export it
    # unless told to.
    model: str | None = None
    payload: Any = attrs.field(default=None, repr=False, eq=False)
    #: The caller's ``Request.tags`` (a team, a job...), carried as given.
    tags: Mapping[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class RequestStarted:
    request_id: str
    backend: str
    operation: str
    key_id: str | None
    attempt: int
    queued_for: float  # seconds since submission
    time: float
    #: The caller's ``Request.tags`` (a team, a job...), carried as given.
    tags: Mapping[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class RequestRetried:
    request_id: str
    backend: str
    key_id: str | None
    attempt: int  # attempts made so far
    error_class: str
    status: int | None
    delay: float
    time: float
    #: The caller's ``Request.tags`` (a team, a job...), carried as given.
    tags: Mapping[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class RequestFinished:
    request_id: str
    backend: str
    operation: str
    outcome: Outcome
    latency: float  # seconds from submission to completion
    key_id: str | None
    attempts: int
    error_class: str | None = None
    #: The error's message, through the core redactor (never contains a key).
    error: str | None = attrs.field(default=None, converter=_redacted)
    usage: Usage | None = None
    batch_size: int = 1
    time: float = 0.0
    # Optional, for tracing: the model that answered, the provider's response id, and the
    # result itself (its content: not to be exported unless told to).
    model: str | None = None
    response_id: str | None = None
    result: Any = attrs.field(default=None, repr=False, eq=False)
    #: The caller's ``Request.tags`` (a team, a job...), carried as given.
    tags: Mapping[str, Any] = attrs.field(factory=dict, eq=False)
    #: What the request cost in dollars (a Decimal), None without a price (docs/costs.md).
    cost: Any = None


@attrs.frozen
class BreakerChanged:
    endpoint: str = attrs.field(converter=redact)
    old_state: str
    new_state: str
    time: float
