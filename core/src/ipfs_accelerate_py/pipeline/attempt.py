"""Attempt: build, send, classify and parse one call; takes no lock and decides nothing.

:func:`run_attempt` returns an :class:`AttemptOutcome` saying what happened; the
settlement stage books it.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Callable, Iterator

from ..errors import AccelerateError, CountMismatch, PluginError, ProviderError, TransientError
from ..http import redirect_error
from ..results import IncompleteStream, Result
from .jobs import Dispatch


class Kind(enum.Enum):
    SUCCESS = "success"  # ``results``: one Result per job, in order
    STREAM = "stream"  # ``first`` chunk, the rest in ``chunks``, ``close`` frees the response
    PROVIDER_ERROR = "provider_error"  # ``error``: a classified ProviderError
    FAILED = "failed"  # ``error``: a plugin's or our own error; neither success nor failure


class AttemptOutcome:
    __slots__ = ("kind", "results", "error", "hint", "usage", "first", "chunks", "close")

    def __init__(self, kind: Kind, *, results: list[Result] | None = None,
                 error: BaseException | None = None, hint: Any = None, usage: Any = None,
                 first: Any = None, chunks: Iterator[Any] | None = None,
                 close: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.results = results
        self.error = error
        self.hint = hint  # the provider's rate-limit headers, for the limiter
        self.usage = usage  # the whole call's usage
        self.first = first
        self.chunks = chunks
        self.close = close


def run_attempt(d: Dispatch, transport: Any, clock: Callable[[], float]) -> AttemptOutcome:
    bs = d.bstate
    backend = bs.backend
    jobs = d.jobs
    hint = None
    try:
        request = backend.merge_batch([j.request for j in jobs]) if len(jobs) > 1 else jobs[0].request
        cfg = bs.config
        http = backend.build_request(request, d.key.key)
        read = cfg.read_timeout
        now = clock()
        deadlines = [j.deadline for j in jobs if j.deadline is not None]
        if deadlines:
            read = max(0.001, min(read, min(deadlines) - now))
        # The transport bounds the answer's size and ends the attempt at the earliest of the
        # requests' deadlines and the attempt's own timeout; it keeps time on the monotonic
        # clock, so the pipeline's (injectable) clock is translated once here.
        if cfg.attempt_timeout is not None:
            deadlines.append(now + cfg.attempt_timeout)
        http.apply_bounds(cfg.max_response_bytes, cfg.max_line_bytes,
                          time.monotonic() + (min(deadlines) - now) if deadlines else None)
        resp = transport.send(http, (cfg.connect_timeout, read), backend=bs.name,
                              request_id=request.request_id)
        try:
            hint = backend.rate_limit_info(resp)
            if not 200 <= resp.status_code < 300:
                error = backend.classify_error(request, resp)
                if 300 <= resp.status_code < 400:  # a redirect: never followed, never retried
                    error = redirect_error(error, resp)
                raise error
            if request.stream:
                first, chunks = _first_chunk(backend, request, resp, bs.name)
                return AttemptOutcome(Kind.STREAM, hint=hint, first=first, chunks=chunks,
                                      close=resp.close)
            result = backend.parse_response(request, resp)
            if not isinstance(result, Result):  # else it would escape unsettled, slot held
                raise TypeError(f"parse_response returned a {type(result).__name__}, "
                                f"not a Result")
        except BaseException:
            resp.close()
            raise
    except ProviderError as err:
        return AttemptOutcome(Kind.PROVIDER_ERROR, error=err, hint=hint)
    except (PluginError, AccelerateError) as err:
        return AttemptOutcome(Kind.FAILED, error=err, hint=hint)
    except Exception as exc:  # a bug in the backend plugin: attribute it, don't retry
        bug = PluginError(bs.name, "backend", exc)
        bug.__cause__ = exc
        return AttemptOutcome(Kind.FAILED, error=bug, hint=hint)
    if len(jobs) == 1:
        return AttemptOutcome(Kind.SUCCESS, results=[result], hint=hint, usage=result.usage)
    try:
        parts = backend.split_batch([j.request for j in jobs], result)
        if len(parts) != len(jobs):
            raise CountMismatch(f"batch answer has {len(parts)} results for {len(jobs)} "
                                f"requests", expected=len(jobs), received=len(parts),
                                backend=bs.name)
    except ProviderError as err:
        return AttemptOutcome(Kind.PROVIDER_ERROR, error=err, hint=hint)
    except Exception as exc:
        return AttemptOutcome(Kind.FAILED, error=PluginError(bs.name, "split_batch", exc),
                              hint=hint)
    return AttemptOutcome(Kind.SUCCESS, results=list(parts), hint=hint, usage=result.usage)


def _first_chunk(backend: Any, request: Any, resp: Any, name: str) -> tuple[Any, Iterator[Any]]:
    chunks = backend.parse_stream(request, resp)
    try:
        return next(chunks), chunks
    except StopIteration:
        raise TransientError("stream ended before its first chunk", backend=name,
                             status=resp.status_code) from None
    except IncompleteStream as exc:
        raise TransientError(f"stream ended before its first chunk: {exc}",
                             backend=name, status=resp.status_code) from None
    except AccelerateError:
        raise
    except Exception as exc:
        raise TransientError(f"stream broke before its first chunk: {type(exc).__name__}",
                             backend=name, status=resp.status_code) from exc
