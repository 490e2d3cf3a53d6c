"""The closed set of error classes every policy decides from.

A backend classifies each failure exactly once, into one :class:`ErrorClass`, and raises
the matching :class:`ProviderError` subclass.  Retry, breaker and limiter decisions look
only at that class (and the hints the error carries), never at raw status codes.
"""

from __future__ import annotations

import enum
from typing import Any

from .redaction import redact


class ErrorClass(str, enum.Enum):
    """What kind of failure a request met.  The pipeline's policies switch on this."""

    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"  # 5xx, overloaded, malformed answer from a flaky server
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_FILTERED = "content_filtered"


#: Classes that mean "the service is unwell"; they feed the circuit breaker.
BREAKER_FAILURES = frozenset(
    {ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.CONNECTION}
)
#: Classes worth another attempt by default.
RETRYABLE = frozenset(
    {ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.CONNECTION}
)


class AccelerateError(Exception):
    """Base class of every error this library raises.

    Messages pass through the core redactor when the error is built: a key a provider
    echoes back, or the credentials of a URL, never reach ``str``, ``repr``, a log line or
    a traceback."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(AccelerateError, ValueError):
    """Invalid configuration.  The message names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class QueueFullError(AccelerateError):
    """The bounded request queue is full and the client was told not to block."""


class DeadlineExceeded(AccelerateError):
    """A request's deadline passed before it could complete."""

    def __init__(self, message: str, *, request_id: str | None = None,
                 last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.last_error = last_error


class CircuitOpenError(AccelerateError):
    """Raised only in fail-fast mode: the endpoint's breaker is open."""

    def __init__(self, endpoint: str, *, request_id: str | None = None) -> None:
        endpoint = redact(endpoint)
        super().__init__(f"circuit open for {endpoint}")
        self.endpoint = endpoint
        self.request_id = request_id


class ClientClosedError(AccelerateError):
    """The client was closed; no new request is accepted, queued ones were cancelled."""


class RequestCancelled(AccelerateError):
    """The caller cancelled the request while its attempt was in flight (the
    ``AsyncClient``'s tasks): the attempt was cut, its capacity given back, and the request
    ends with the ``cancelled`` outcome.  Awaiting its handle raises
    ``asyncio.CancelledError``."""


class PluginError(AccelerateError):
    """A plugin hook raised.  ``plugin`` names it; the original error is ``__cause__``."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}")
        self.plugin = plugin
        self.hook = hook


class UnknownPluginError(AccelerateError, LookupError):
    """A backend or strategy was asked for by a name no installed plugin provides."""

    def __init__(self, kind: str, name: str, installed: list[str], hint: str = "") -> None:
        listed = ", ".join(sorted(installed)) or "none"
        msg = f"unknown {kind} {name!r}; installed: {listed}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.kind = kind
        self.name = name
        self.installed = sorted(installed)


class ProviderError(AccelerateError):
    """A failure attributed to the remote service, classified once by the backend.

    Carries what a caller needs to act on it: the HTTP status, the provider's own error
    code and message, the request id, retry hints and the response object.  The API key
    is never stored here, so it cannot leak through ``str``, ``repr`` or a traceback.
    """

    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        response: Any = None,
        backend: str | None = None,
        provider_request_id: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        #: The pipeline's id of the request (set by the pipeline on every error).
        self.request_id = request_id
        #: The provider's own id of the request, when its answer carried one.
        self.provider_request_id = provider_request_id
        self.retry_after = retry_after
        self.should_retry = should_retry
        self.response = response
        self.backend = backend
        self.key_id: str | None = None  # a short non-secret id, filled by the pipeline
        #: For auth errors: does the provider reject the key itself (take it out of
        #: rotation) rather than a permission on one resource?  None: decide by status
        #: (401 yes, 403 no).
        self.key_rejected: bool | None = None
        self.attempts: int = 0

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.backend:
            parts.append(f"backend={self.backend}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.provider_request_id:
            parts.append(f"provider_request_id={self.provider_request_id}")
        return " ".join(parts[:1]) + (" (" + ", ".join(parts[1:]) + ")" if parts[1:] else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self):  # keep errors picklable across processes (without the response)
        return (_rebuild_error, (type(self), self.message, self.status, self.code,
                                 self.request_id, self.retry_after, self.should_retry,
                                 self.backend, self.provider_request_id))


def _rebuild_error(cls, message, status, code, request_id, retry_after, should_retry, backend,
                   provider_request_id=None):
    return cls(message, status=status, code=code, request_id=request_id,
               retry_after=retry_after, should_retry=should_retry, backend=backend,
               provider_request_id=provider_request_id)


class RateLimited(ProviderError):
    error_class = ErrorClass.RATE_LIMITED


class TransientError(ProviderError):
    error_class = ErrorClass.TRANSIENT


class RequestTimeout(ProviderError):
    error_class = ErrorClass.TIMEOUT


class ConnectionFailed(ProviderError):
    error_class = ErrorClass.CONNECTION


class AuthError(ProviderError):
    error_class = ErrorClass.AUTH


class InvalidRequest(ProviderError):
    error_class = ErrorClass.INVALID_REQUEST


class NotFound(ProviderError):
    error_class = ErrorClass.NOT_FOUND


class ContextTooLong(InvalidRequest):
    error_class = ErrorClass.CONTEXT_TOO_LONG


class ContentFiltered(ProviderError):
    error_class = ErrorClass.CONTENT_FILTERED


class CountMismatch(TransientError):
    """The answer holds a different number of items than the inputs sent (or indices that
    do not match them): a wrong answer, never misassigned to inputs and never retried (a
    server that answers short does so again).  ``expected`` and ``received`` say how many."""

    def __init__(self, message: str, *, expected: int | None = None,
                 received: int | None = None, **kwargs: Any) -> None:
        kwargs["should_retry"] = False  # deterministic: resending gets the same short answer
        kwargs.setdefault("code", "count_mismatch")
        super().__init__(message, **kwargs)
        self.expected = expected
        self.received = received

    def __reduce__(self):
        rebuild, args = super().__reduce__()
        return (_rebuild_count_mismatch, (args, self.expected, self.received))


def _rebuild_count_mismatch(args, expected, received):
    err = _rebuild_error(*args)
    err.expected, err.received = expected, received
    return err


ERROR_TYPES: dict[ErrorClass, type[ProviderError]] = {
    ErrorClass.RATE_LIMITED: RateLimited,
    ErrorClass.TRANSIENT: TransientError,
    ErrorClass.TIMEOUT: RequestTimeout,
    ErrorClass.CONNECTION: ConnectionFailed,
    ErrorClass.AUTH: AuthError,
    ErrorClass.INVALID_REQUEST: InvalidRequest,
    ErrorClass.NOT_FOUND: NotFound,
    ErrorClass.CONTEXT_TOO_LONG: ContextTooLong,
    ErrorClass.CONTENT_FILTERED: ContentFiltered,
}


def error_for_status(status: int) -> type[ProviderError]:
    """The default class for an HTTP status when the body says nothing more specific."""
    if 300 <= status < 400:
        return InvalidRequest  # a redirect we do not follow: the base URL is probably wrong
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFound
    if status == 408:
        return RequestTimeout
    if status == 413:
        return InvalidRequest
    if 400 <= status < 500:
        return InvalidRequest
    return TransientError


class ResponseTooLarge(ProviderError):
    """The answer (after decompression) or one line of a stream went over the backend's
    ``max_response_bytes`` / ``max_line_bytes``.  Never retried: the same request gets the
    same answer.  ``limit`` is the bound that was passed."""

    error_class = ErrorClass.INVALID_REQUEST

    def __init__(self, message: str, *, limit: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("should_retry", False)
        super().__init__(message, **kwargs)
        self.limit = limit


class UnexpectedRedirect(InvalidRequest):
    """The server answered 3xx.  Redirects are never followed (the key would go to
    another place): usually the base URL is wrong.  ``location`` is where it pointed."""

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("should_retry", False)
        super().__init__(message, **kwargs)
        self.location = location


class StreamError(AccelerateError):
    """A stream broke after its first chunk: cut, truncated, or an error event.

    ``partial_text`` holds what arrived before the break, so nothing is silently short.
    ``cause_error`` is the classified provider error when the stream carried one.
    """

    def __init__(self, message: str, *, partial_text: str = "", request_id: str | None = None,
                 cause_error: ProviderError | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.request_id = request_id
        self.cause_error = cause_error
