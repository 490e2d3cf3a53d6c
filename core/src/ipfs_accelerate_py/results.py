"""One result type and one streaming interface across every backend."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any, Callable, Iterator

import attrs

from .errors import AccelerateError, ProviderError, StreamError


@attrs.frozen
class Usage:
    """Token counts the provider reported.  ``cached_tokens`` (read from a prompt cache) and
    ``cache_write_tokens`` are part of ``prompt_tokens``; ``reasoning_tokens`` are part of
    ``completion_tokens`` (OpenAI's convention; other providers' counts are mapped to it)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def of(cls, prompt: int | None, completion: int | None, total: int | None = None, *,
           cached: int | None = None, reasoning: int | None = None,
           cache_write: int | None = None) -> Usage:
        p, c = int(prompt or 0), int(completion or 0)
        return cls(p, c, int(total) if total is not None else p + c, int(cached or 0),
                   int(reasoning or 0), int(cache_write or 0))


@attrs.frozen
class ToolCall:
    """A complete tool call.  ``arguments`` is the JSON text the model produced."""

    id: str | None
    name: str
    arguments: str = ""
    type: str = "function"


@attrs.frozen
class ToolCallDelta:
    """A piece of a streamed tool call; pieces with the same ``index`` concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@attrs.frozen
class Result:
    """What every backend operation returns.

    Chat and completion operations fill ``text``/``tool_calls``/``finish_reason``; other
    operations put their parsed output in ``data`` (a list of vectors for embeddings,
    ranked hits for rerank, a model list, object bytes...).  ``raw`` is the decoded body.
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    #: The pipeline's request id (a backend may put the provider's id here; the pipeline
    #: moves it to ``provider_request_id``).
    request_id: str | None = None
    raw: Any = attrs.field(default=None, repr=False)
    data: Any = attrs.field(default=None, repr=False)
    backend: str | None = None
    provider_request_id: str | None = None
    key_id: str | None = None
    attempts: int = 1
    #: What the call cost in US dollars, from ``usage`` and the price table
    #: (:mod:`ipfs_accelerate_py.costs`); None when the model has no price.
    cost: Decimal | None = None
    #: Set on an answer served from the response cache: a
    #: :class:`~ipfs_accelerate_py.caching.CacheHit` (entry key, namespace, store, kind,
    #: similarity); None for an answer from the provider.
    cache: Any = None


@attrs.frozen
class StreamChunk:
    """One piece of a stream: a text delta, tool-call deltas, and (at the end) usage."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    raw: Any = attrs.field(default=None, repr=False)


class IncompleteStream(AccelerateError):
    """Raised by a backend's stream parser when the stream ended without its terminator."""


class ResultStream:
    """An iterator of :class:`StreamChunk` that never ends silently short.

    The pipeline hands one out once the first chunk has arrived (before that, failures are
    retried like any request).  After that, a cut connection, a truncated stream or an error
    event raises :class:`~ipfs_accelerate_py.errors.StreamError` carrying ``partial_text``.
    Iterate it, or call :meth:`collect` for the aggregated :class:`Result`.  Close it (or use
    ``with``) if you stop early, so its connection and key slot are released.
    """

    def __init__(self, first: StreamChunk, rest: Iterator[StreamChunk], *, request_id: str,
                 backend: str | None = None, key_id: str | None = None, attempts: int = 1,
                 on_close: Callable[[BaseException | None, Usage | None], None] | None = None,
                 closer: Callable[[], None] | None = None) -> None:
        self.request_id = request_id
        self.backend = backend
        self.key_id = key_id
        self.attempts = attempts
        self._pending: StreamChunk | None = first
        self._rest = rest
        self._on_close = on_close
        self._closer = closer
        self._lock = threading.Lock()
        self._done = False
        self._parts: list[str] = []
        self._tools: dict[int, list[Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        #: Set when the stream ends: what it cost (None: no price, or no usage reported).
        self.cost: Decimal | None = None
        #: A :class:`~ipfs_accelerate_py.caching.CacheHit` when replayed from the cache.
        self.cache: Any = None

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def __iter__(self) -> ResultStream:
        return self

    def __next__(self) -> StreamChunk:
        if self._done:
            raise StopIteration
        if self._pending is not None:
            chunk, self._pending = self._pending, None
        else:
            try:
                chunk = next(self._rest)
            except StopIteration:
                self._finish(None)
                raise
            except StreamError as exc:
                if not exc.partial_text:
                    exc.partial_text = self.text
                exc.request_id = exc.request_id or self.request_id
                self._finish(exc)
                raise
            except ProviderError as exc:
                err = StreamError(f"stream failed after it started: {exc}", partial_text=self.text,
                                  request_id=self.request_id, cause_error=exc)
                self._finish(err)
                raise err from exc
            except IncompleteStream as exc:
                err = StreamError(f"stream truncated: {exc}", partial_text=self.text,
                                  request_id=self.request_id)
                self._finish(err)
                raise err from exc
            except Exception as exc:  # a cut connection, a decoding error, a malformed event
                err = StreamError(f"stream broken: {type(exc).__name__}: {exc}",
                                  partial_text=self.text, request_id=self.request_id)
                self._finish(err)
                raise err from exc
        self._absorb(chunk)
        return chunk

    def _absorb(self, chunk: StreamChunk) -> None:
        if chunk.text:
            self._parts.append(chunk.text)
        for d in chunk.tool_calls:
            slot = self._tools.setdefault(d.index, [None, None, []])
            slot[0] = slot[0] or d.id
            slot[1] = slot[1] or d.name
            slot[2].append(d.arguments)
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.model:
            self.model = chunk.model

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(id=v[0], name=v[1] or "", arguments="".join(v[2]))
                     for _, v in sorted(self._tools.items()))

    def collect(self) -> Result:
        """Consume the rest of the stream and return the aggregated result."""
        for _ in self:
            pass
        return Result(text=self.text, tool_calls=self.tool_calls, finish_reason=self.finish_reason,
                      usage=self.usage, model=self.model, request_id=self.request_id,
                      backend=self.backend, key_id=self.key_id, attempts=self.attempts,
                      cost=self.cost)

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        if self._closer is not None:
            try:
                self._closer()
            except Exception:
                pass
        if self._on_close is not None:
            self._on_close(error, self.usage)

    def close(self) -> None:
        """Stop early: release the connection and the key slot."""
        if not self._done:
            self._finish(StreamError("stream closed by the caller before its end",
                                     partial_text=self.text, request_id=self.request_id))

    def __enter__(self) -> ResultStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
