"""The asyncio driver of the pipeline: :class:`AsyncClient`.

It drives the same stages as the threaded :class:`~ipfs_accelerate_py.client.Client`
(:class:`~ipfs_accelerate_py.pipeline.Pipeline`: admission, dispatch, attempt,
settlement, over one scheduling state and an injected clock); only the waiting differs.
One dispatcher task asks the dispatch stage for every request that may run now (it also
fails queued requests whose deadline passed), and runs each reserved attempt as a task:
``Pipeline.run`` under :func:`.bridge.run_sync`, whose transport awaits aiohttp on the
loop.  No thread is held per request, and nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterable

import attrs

from ..backend import Backend
from ..client import Client as _SyncClient
from ..config import ClientConfig
from ..errors import ClientClosedError, ConfigError, RequestCancelled, StreamError
from ..events import Outcome
from ..extensions import resolve_observers, resolve_state_store
from ..futures import RequestFuture
from ..pipeline import Dispatch, Job, Pipeline
from ..plugins import PluginManager, get_plugin_manager
from ..request import Request
from ..results import Result, ResultStream, StreamChunk
from ..stats import StatsSnapshot
from .bridge import await_, run_sync

log = logging.getLogger("ipfs_accelerate")


class _LoopFuture(RequestFuture):
    """A job's future that also settles an asyncio future (the handle's) on its loop."""

    def __init__(self, request_id: str, waiter: asyncio.Future,
                 loop: asyncio.AbstractEventLoop, loop_thread: int | None) -> None:
        super().__init__(request_id)
        self._waiter = waiter
        self._loop = loop
        self._loop_thread = loop_thread

    def set_result(self, result: Any) -> None:
        super().set_result(result)
        self._relay()

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._relay()

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled:
            self._relay()
        return cancelled

    def _relay(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._settle_waiter()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._settle_waiter)

    def _settle_waiter(self) -> None:
        waiter = self._waiter
        if waiter.done():
            return
        if self._state == "CANCELLED" or self._state == "CANCELLED_AND_NOTIFIED":
            waiter.cancel()
            return
        exc = self._exception
        if isinstance(exc, RequestCancelled):
            waiter.cancel()
        elif exc is not None:
            waiter.set_exception(exc)
        else:
            res = self._result
            waiter.set_result(AsyncResultStream(res) if isinstance(res, ResultStream) else res)


class _Awaited:
    """A coroutine whose ``result()`` is awaited from code the bridge runs."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Any) -> None:
        self._coro = coro

    def result(self) -> Any:
        return await_(self._coro)


class RequestHandle:
    """What :meth:`AsyncClient.submit` returns: await it for the :class:`Result` (or the
    :class:`AsyncResultStream` of a stream); :meth:`cancel` it at any time."""

    __slots__ = ("_client", "_job", "_waiter", "request_id")

    def __init__(self, client: AsyncClient, job: Job, waiter: asyncio.Future) -> None:
        self._client = client
        self._job = job
        self._waiter = waiter
        self.request_id = job.request.request_id

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        try:
            return await asyncio.shield(self._waiter)
        except asyncio.CancelledError:
            # The awaiting task was cancelled: so is the request.  Return once settlement
            # gave its capacity back.
            if not self._waiter.done() or not self._waiter.cancelled():
                await self._client._cancel(self._job)
            raise

    def done(self) -> bool:
        return self._waiter.done()

    def cancelled(self) -> bool:
        return self._waiter.cancelled()

    def cancel(self) -> bool:
        """Cancel the request, queued or in flight.  False if it had already ended.  Its
        capacity is given back as soon as the loop runs (``await handle`` then raises
        ``asyncio.CancelledError``)."""
        if self._job.future.done():
            return False
        return self._client._start_cancel(self._job)[0]

    def __repr__(self) -> str:
        return f"<RequestHandle {self.request_id} {self._job.future._state}>"


class AsyncResultStream:
    """``async for chunk in stream``: the pipeline's :class:`ResultStream`, read on the
    loop.  Close it (``async with`` / :meth:`aclose`) if you stop early, so its connection
    and key slot are released; cancelling the task reading it does the same."""

    def __init__(self, stream: ResultStream) -> None:
        self._stream = stream
        self.request_id = stream.request_id
        self.backend = stream.backend
        self.key_id = stream.key_id
        self.attempts = stream.attempts

    @property
    def text(self) -> str:
        return self._stream.text

    @property
    def usage(self) -> Any:
        return self._stream.usage

    @property
    def finish_reason(self) -> str | None:
        return self._stream.finish_reason

    def __aiter__(self) -> AsyncResultStream:
        return self

    async def __anext__(self) -> StreamChunk:
        try:
            return await run_sync(_next_or_stop, self._stream)
        except StopAsyncIteration:
            raise
        except StreamError as exc:
            if isinstance(exc.__cause__, RequestCancelled):
                raise asyncio.CancelledError() from None
            raise
        except BaseException:
            self._stream.close()  # cancelled while reading: free the slot, then go
            raise

    async def collect(self) -> Result:
        async for _ in self:
            pass
        return self._stream.collect()

    async def aclose(self) -> None:
        self._stream.close()

    async def __aenter__(self) -> AsyncResultStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stream.close()


def _resolve(w: asyncio.Future) -> None:
    if not w.done():
        w.set_result(None)


def _next_or_stop(stream: ResultStream) -> StreamChunk:
    for chunk in stream:
        return chunk
    raise StopAsyncIteration


class AsyncClient:
    """The resilient pipeline for asyncio programs; the same configuration, backends,
    plugins, hooks, stats and semantics as :class:`~ipfs_accelerate_py.client.Client`.

    >>> async with AsyncClient([BackendConfig("openai", keys=["test-key-1"])]) as client:
    ...     result = await client.call("openai", "chat", {"model": "gpt-4o-mini", ...})

    Bound to the event loop of its first use.  ``transport`` defaults to the native
    :class:`~ipfs_accelerate_py.aio.transport.AsyncTransport` (the ``async`` extra:
    aiohttp); an in-memory sync transport (``MemoryTransport``) also works.
    """

    def __init__(self, backends: Any, config: ClientConfig | None = None, *,
                 plugin_manager: PluginManager | None = None, seed: int | None = None,
                 transport: Any = None, clock: Callable[[], float] = time.monotonic,
                 **config_changes: Any) -> None:
        config = config or ClientConfig()
        if config_changes:
            try:
                config = attrs.evolve(config, **config_changes)
            except TypeError as exc:
                raise ConfigError("config", str(exc)) from None
        self.config = config
        self._pm = plugin_manager or get_plugin_manager()
        observers = resolve_observers(config, self._pm)
        self._store, self._owns_store = resolve_state_store(config, self._pm)
        self._owns_transport = transport is None
        if transport is None:
            from .transport import AsyncTransport

            transport = AsyncTransport(pool_size=config.max_concurrency)
        self._transport = transport
        try:
            self._pipeline = p = Pipeline(backends, config, self._pm, clock, seed, transport,
                                          self._store, observers)
        except BaseException:
            if self._owns_store:
                self._store.close()
            raise
        s = self._s = p.s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wakeup: asyncio.Future | None = None  # the dispatcher's sleep, if it sleeps
        self._dirty = False  # a stage asked for a look since the dispatcher's last pick
        self._space = asyncio.Event()  # bound to a loop on first wait (3.10+)
        self._dispatcher: asyncio.Task | None = None
        self._attempts: dict[Job, asyncio.Task] = {}  # jobs in flight -> their attempt
        self._tasks: set[asyncio.Task] = set()
        s.wake_work = s.wake_all = s.wake_reaper = self._wake_work
        s.wake_space = self._wake_space
        subscribe = getattr(clock, "subscribe", None)
        if subscribe is not None:
            subscribe(self._wake_all)
        p.submit = self._bridged_submit  # the semantic cache's embeddings go through here

    # ------------------------------------------------------------------ wake-ups
    def _call(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(fn)

    def _set_work(self) -> None:
        self._dirty = True
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_work(self) -> None:
        self._call(self._set_work)

    def _wake_space(self) -> None:
        self._call(self._space.set)

    def _wake_all(self) -> None:
        self._call(self._set_work)
        self._call(self._space.set)

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._loop_thread = threading.get_ident()
        elif self._loop is not loop:
            raise RuntimeError("an AsyncClient is bound to the event loop it was first used on")
        if self._dispatcher is None and not self._s.stopped:
            self._dispatcher = loop.create_task(self._dispatch_loop(), name="accelerate-dispatch")

    @property
    def backends(self) -> dict[str, Backend]:
        return {n: s.backend for n, s in self._s.backends.items()}

    # ------------------------------------------------------------------ submitting
    def _coerce(self, request: Request | str, operation: str | None, payload: Any,
                fields: dict[str, Any]) -> Request:
        return _SyncClient._coerce(self, request, operation, payload, fields)  # type: ignore[arg-type]

    async def submit(self, request: Request | str, operation: str | None = None,
                     payload: Any = None, *, block: bool | None = None,
                     timeout: float | None = None, **fields: Any) -> RequestHandle:
        """Queue a request; return its :class:`RequestHandle` (await it for the result).
        When the queue is full it raises :class:`QueueFullError`, or, with ``block=True``
        (default: ``ClientConfig.block_when_full``), waits up to ``timeout`` for space."""
        req = self._coerce(request, operation, payload, fields)
        return await self._submit(req, block, timeout)

    async def _submit(self, req: Request, block: bool | None, timeout: float | None
                      ) -> RequestHandle:
        self._bind()
        admission, s = self._pipeline.admission, self._s
        job = admission.admit(req)
        waiter = self._waiter_for(job)
        p = self._pipeline
        # The cache stage before the queue; run on the bridge, so a semantic lookup's
        # embeddings request (through this client) is awaited, not waited for.
        if (p.cache is not None or req.cache in (True, "refresh")) and \
                await run_sync(p.serve_from_cache, job):
            return RequestHandle(self, job, waiter)
        block = self.config.block_when_full if block is None else block
        with s.lock:
            depth = admission.offer(job, True)
        if depth is None:
            if not block:
                raise admission.queue_full(None)
            end = None if timeout is None else time.monotonic() + timeout
            while depth is None:
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise admission.queue_full(timeout)
                self._space.clear()
                with s.lock:
                    s.space_waiting += 1
                try:
                    try:
                        await asyncio.wait_for(self._space.wait(),
                                               0.1 if remaining is None else min(remaining, 0.1))
                    except TimeoutError:
                        pass
                finally:
                    with s.lock:
                        s.space_waiting -= 1
                with s.lock:
                    depth = admission.offer(job, True)
        fut: RequestFuture = job.future  # type: ignore[assignment]
        fut._on_cancel = self._on_cancelled
        admission.queued(job, depth)
        return RequestHandle(self, job, waiter)

    def _bridged_submit(self, req: Request) -> _Awaited:
        """``pipeline.submit`` for the cache stage, which runs on the bridge: its
        ``.result()`` awaits the request on the loop instead of blocking it."""
        async def run() -> Any:
            return await (await self._submit(req, None, None))
        return _Awaited(run())

    def invalidate_cache(self, *, key: str | None = None, model: str | None = None,
                         older_than: float | None = None, namespace: str | None = None,
                         all_namespaces: bool = False) -> int:
        """As :meth:`Client.invalidate_cache <ipfs_accelerate_py.client.Client.invalidate_cache>`."""
        return _SyncClient.invalidate_cache(self, key=key, model=model,  # type: ignore[arg-type]
                                            older_than=older_than, namespace=namespace,
                                            all_namespaces=all_namespaces)

    def _waiter_for(self, job: Job) -> asyncio.Future:
        """Give ``job`` a future that also resolves an asyncio future on this loop (no
        condition variable, no callback list: the stages settle on the loop's thread)."""
        loop = self._loop
        assert loop is not None
        waiter = loop.create_future()
        fut = _LoopFuture(job.request.request_id, waiter, loop, self._loop_thread)
        fut._job = job
        job.future = fut
        return waiter

    async def call(self, request: Request | str, operation: str | None = None,
                   payload: Any = None, **fields: Any) -> Any:
        """Submit and await: the :class:`Result`, or the request's error raised.
        Cancelling the awaiting task cancels the request and frees its capacity."""
        block = fields.pop("block", None)
        timeout = fields.pop("timeout", None)
        req = self._coerce(request, operation, payload, fields)
        handle = await self._submit(req, block, timeout)
        return await handle

    async def stream(self, request: Request | str, operation: str | None = None,
                     payload: Any = None, **fields: Any) -> AsyncIterator[StreamChunk]:
        """``async for chunk in client.stream(...)``: submit a streaming request, wait for
        its first chunk, yield the chunks.  Leaving the loop early closes the stream when
        the generator is finalized; for a prompt release use :meth:`open_stream` with
        ``async with``."""
        if isinstance(request, Request):
            request = request.evolve(stream=True)
        else:
            fields["stream"] = True
        handle = await self.submit(request, operation, payload, **fields)
        stream: AsyncResultStream = await handle
        async with stream:
            async for chunk in stream:
                yield chunk

    async def open_stream(self, request: Request | str, operation: str | None = None,
                          payload: Any = None, **fields: Any) -> AsyncResultStream:
        """Submit a streaming request and return its :class:`AsyncResultStream` once the
        first chunk arrived (its ``text``, ``usage`` stay readable after iteration)."""
        if isinstance(request, Request):
            request = request.evolve(stream=True)
        else:
            fields["stream"] = True
        return await (await self.submit(request, operation, payload, **fields))

    async def map(self, requests: Iterable[Request], *, return_exceptions: bool = False
                  ) -> list[Any]:
        """Run many requests; results in input order.  Waits for queue space rather than
        failing.  With ``return_exceptions`` errors are returned in place; otherwise the
        first failed request's error (in input order) is raised and the rest cancelled."""
        handles = []
        try:
            for r in requests:
                handles.append(await self.submit(r, block=True))
            out: list[Any] = []
            for h in handles:
                try:
                    out.append(await h)
                except Exception as exc:
                    if not return_exceptions:
                        raise
                    out.append(exc)
            return out
        except BaseException:
            for h in handles:
                h.cancel()
            raise

    # ------------------------------------------------------------------ cancellation
    def _on_cancelled(self, fut: RequestFuture) -> None:  # a queued request's future
        if fut._job is not None:
            self._pipeline.settlement.cancelled(fut._job)

    def _start_cancel(self, job: Job) -> tuple[bool, asyncio.Task | None]:
        """Cancel ``job`` wherever it is: (whether it was cancelled, the attempt task to
        wait for when one was cut)."""
        if job.future.cancel():  # still queued, never sent: it leaves the queue now
            return True, None
        p, s = self._pipeline, self._s
        # Between attempts (waiting out a backoff, a breaker, a key): out of the queue.
        with s.lock:
            removed = s.queue.remove(job.entry)
            if removed:
                s.wake_space()
        if removed:
            p.settlement.finish_error(job, RequestCancelled("cancelled by the caller"),
                                      Outcome.CANCELLED)
            return True, None
        task = self._attempts.get(job)
        if task is not None and not task.done():
            d: Dispatch = task.dispatch  # type: ignore[attr-defined]
            if not any(j is not job and not j.future.done() for j in d.jobs):
                task.cancel()  # settlement gives the capacity back as the attempt ends
                return True, task
            # A batchmate still wants the shared call: only this request ends now.
            p.settlement.finish_error(job, RequestCancelled("cancelled by the caller"),
                                      Outcome.CANCELLED)
            return True, None
        return False, None  # it ended meanwhile

    async def _cancel(self, job: Job) -> None:
        _, task = self._start_cancel(job)
        if task is not None:
            await asyncio.wait({task})

    # ------------------------------------------------------------------ the driver
    async def _dispatch_loop(self) -> None:
        p, s = self._pipeline, self._s
        dispatch, settlement, clock = p.dispatch, p.settlement, s.clock
        loop = asyncio.get_running_loop()
        while True:
            self._dirty = False
            picked: list[Dispatch] = []
            failed: list[tuple[Job, BaseException]] = []
            with s.lock:
                if s.stopped:
                    return
                now = clock()
                expired = dispatch.expire(now)
                while True:
                    d = dispatch.pick(now, failed)
                    if d is None:
                        break
                    picked.append(d)
                wait = dispatch.wait_time(now)
            for job in expired:
                settlement.expired(job)
            for job, exc in failed:
                settlement.fail(job, exc)
            for d in picked:
                task = loop.create_task(self._attempt(d))
                task.dispatch = d  # type: ignore[attr-defined]
                task.began = False  # type: ignore[attr-defined]
                self._tasks.add(task)
                task.add_done_callback(self._attempt_done)
                for j in d.jobs:
                    self._attempts[j] = task
            if picked or expired or failed:
                await asyncio.sleep(0)  # let the attempts start; then look again
                continue
            # Sleep until a stage wakes us (work queued, capacity freed) or ``wait`` passes;
            # a wake-up since the pick above (settling expired jobs) means: look again.
            if self._dirty:
                continue
            self._wakeup = w = loop.create_future()
            timer = None if wait is None else loop.call_later(wait, _resolve, w)
            try:
                await w
            finally:
                self._wakeup = None
                if timer is not None:
                    timer.cancel()

    def _attempt_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        d: Dispatch = task.dispatch  # type: ignore[attr-defined]
        for j in d.jobs:
            if self._attempts.get(j) is task:
                del self._attempts[j]
        if not task.began and not d.settled:  # type: ignore[attr-defined]
            # Cancelled before its attempt began (a task cancelled before its first step
            # runs none of its code): nothing was sent, everything reserved goes back.
            self._pipeline.settlement.unsent(d, RequestCancelled("cancelled before it was sent"))

    async def _attempt(self, d: Dispatch) -> None:
        p = self._pipeline
        asyncio.current_task().began = True  # type: ignore[union-attr]
        try:
            await run_sync(p.run, d)
        except asyncio.CancelledError:
            pass  # an attempt in flight turns it into RequestCancelled; see _attempt_done
        except BaseException as exc:  # a bug of ours must not lose requests
            log.exception("ipfs-accelerate: internal error while executing a request")
            for j in d.jobs:
                p.settlement.finish_error(j, exc, Outcome.ERROR)
            if not d.settled:
                p.settlement.unsent(d, exc)  # its capacity back; the jobs already ended

    # ------------------------------------------------------------------ stats / lifecycle
    def stats(self) -> StatsSnapshot:
        """Counters, latency percentiles and live gauges, as ``Client.stats``."""
        return _SyncClient.stats(self)  # type: ignore[arg-type]

    def reset_stats(self) -> None:
        self._s.stats.reset()

    def breaker_state(self, backend: str) -> str:
        return self._s.backends[backend].breaker.state(self._s.clock())

    def add_observer(self, observer: Any) -> None:
        """Watch this client's events from now on (see ``Client.add_observer``)."""
        self._pipeline.monitor.add(observer)

    async def aclose(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests.  With ``wait`` finish everything queued and in flight
        (up to ``timeout``); whatever remains is failed with :class:`ClientClosedError`,
        attempts still in flight are cancelled."""
        s = self._s
        with s.lock:
            if s.stopped:
                return
            s.closing = True
        self._wake_all()
        if wait and self._loop is not None:
            end = None if timeout is None else time.monotonic() + timeout
            while True:
                with s.lock:
                    busy = len(s.queue) or s.in_flight
                if not busy:
                    break
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._space.clear()
                try:
                    await asyncio.wait_for(self._space.wait(),
                                           0.05 if remaining is None else min(remaining, 0.05))
                except TimeoutError:
                    pass
        leftovers = []
        with s.lock:
            while True:
                e = s.queue.pop(float("inf"))
                if e is None:
                    break
                leftovers.append(e)
            s.stopped = True
        for e in leftovers:
            self._pipeline.settlement.finish_error(
                e.payload, ClientClosedError("the client was closed before this request ran"),
                Outcome.CANCELLED)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.wait({self._dispatcher})
        if self._owns_transport:
            aclose = getattr(self._transport, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                self._transport.close()
        self._s.costs.close()  # settlements a shared ledger has not taken yet
        if self._pipeline.cache is not None:
            self._pipeline.cache.close()
        if self._owns_store:
            try:
                self._store.close()
            except Exception as exc:
                log.warning("ipfs-accelerate: closing the state store failed: %s", exc)

    async def __aenter__(self) -> AsyncClient:
        self._bind()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (f"<AsyncClient backends={sorted(self._s.backends)} "
                f"max_concurrency={self.config.max_concurrency}>")


__all__ = ["AsyncClient", "AsyncResultStream", "RequestHandle"]
