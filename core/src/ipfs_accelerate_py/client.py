"""The threaded driver of the pipeline: what the client does for every request.

``submit`` admits a request into the bounded priority queue (:mod:`.pipeline.admission`)
and returns a ``concurrent.futures.Future``.  ``max_concurrency`` worker threads ask the
dispatch stage for the best runnable request and a key with capacity
(:mod:`.pipeline.dispatch`), send it (:mod:`.pipeline.attempt`) and hand the outcome to
the settlement stage (:mod:`.pipeline.settlement`), which resolves the future or puts
the request back in the queue to wait out a backoff (its key slot is free meanwhile).
Every request ends exactly once: with a result, a classified error, a deadline error, or
cancellation.  This module only waits: on conditions, and for the stages' work.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Iterable

import attrs

from .backend import Backend
from .config import ClientConfig
from .errors import ClientClosedError, ConfigError
from .events import Outcome
from .futures import RequestFuture
from .extensions import resolve_observers, resolve_state_store
from .http import Transport
from .pipeline import Job, Pipeline
from .plugins import PluginManager, get_plugin_manager
from .request import Priority, Request
from .results import ResultStream
from .stats import StatsSnapshot

log = logging.getLogger("ipfs_accelerate")

#: How often (seconds) the reaper of a client with an empty queue looks again; a request
#: due sooner wakes it.
_REAPER_IDLE = 1.0


class Client:
    """The resilient pipeline in front of one or more backends.

    >>> client = Client([BackendConfig("openai", keys=["test-key-1", "test-key-2"])])
    >>> client.call("openai", "chat", {"model": "gpt-4o-mini", "messages": [...]})

    Safe to use from many threads at once.  Use it as a context manager, or call
    :meth:`close`, to finish queued work and stop the workers.  ``clock`` (default
    ``time.monotonic``) is the pipeline's only source of time; a clock with a
    ``subscribe(callback)`` method (``testing.ManualClock``) wakes the workers when it moves.
    """

    def __init__(self, backends: Any, config: ClientConfig | None = None, *,
                 plugin_manager: PluginManager | None = None, seed: int | None = None,
                 transport: Transport | None = None,
                 clock: Callable[[], float] = time.monotonic, **config_changes: Any) -> None:
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
        # Any object with Transport's send()/close() may replace the pooled session
        # (an application's own session settings, an in-memory transport in tests).
        self._transport = transport or Transport(pool_size=config.max_concurrency)
        self._clock = clock
        try:
            self._pipeline = p = Pipeline(backends, config, self._pm, clock, seed,
                                          self._transport, self._store, observers)
        except BaseException:  # nothing made for this client outlives it
            if transport is None:
                self._transport.close()
            if self._owns_store:
                self._store.close()
            raise
        s = self._s = p.s
        self._cond = threading.Condition(s.lock)  # workers: work may be runnable
        self._space = threading.Condition(s.lock)  # submitters: queue space
        # The reaper fails queued requests whose deadline passed even while every worker
        # is busy in a long call; it looks once a second while the queue is empty.
        self._reaper_cond = threading.Condition(s.lock)
        s.wake_work = self._cond.notify
        s.wake_all = self._cond.notify_all
        s.wake_space = self._space.notify_all
        s.wake_reaper = self._reaper_cond.notify
        self._reaper: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        subscribe = getattr(clock, "subscribe", None)
        if subscribe is not None:
            subscribe(self._clock_moved)
        p.submit = self.submit  # the semantic cache's embeddings go through this client

    def _clock_moved(self) -> None:
        with self._s.lock:
            self._cond.notify_all()
            self._reaper_cond.notify_all()
            self._space.notify_all()

    @property
    def backends(self) -> dict[str, Backend]:
        return {n: s.backend for n, s in self._s.backends.items()}

    # ------------------------------------------------------------------ submitting
    def _coerce(self, request: Request | str, operation: str | None, payload: Any,
                fields: dict[str, Any]) -> Request:
        if isinstance(request, Request):
            if operation is not None or payload is not None or fields:
                raise TypeError("pass either a Request or (backend, operation, payload, ...)")
            req = request
        else:
            if operation is None:
                raise TypeError("operation is required")
            req = Request(operation=operation, payload=payload or {}, backend=request, **fields)
        if req.backend is None:
            backends = self._s.backends
            if len(backends) != 1:
                raise ConfigError("backend", f"request names no backend; configured: "
                                  f"{', '.join(sorted(backends))}")
            req = req.evolve(backend=next(iter(backends)))
        return req

    def submit(self, request: Request | str, operation: str | None = None, payload: Any = None,
               *, block: bool | None = None, timeout: float | None = None, **fields: Any) -> Future:
        """Queue a request; return a Future resolved with its :class:`Result` (or
        :class:`ResultStream` for ``stream=True``) or its error.

        ``submit(Request(...))`` or ``submit("openai", "chat", {...}, priority="HIGH")``.
        When the queue is full it raises :class:`QueueFullError`, or, with ``block=True``
        (default: ``ClientConfig.block_when_full``), waits up to ``timeout`` for space.
        """
        req = self._coerce(request, operation, payload, fields)
        return self._submit(req, block, timeout, wake=True)

    def _submit(self, req: Request, block: bool | None, timeout: float | None,
                wake: bool) -> RequestFuture:
        admission = self._pipeline.admission
        s = self._s
        job = admission.admit(req)
        if self._pipeline.serve_from_cache(job):  # a hit ends here: no queue, key or token
            return job.future  # type: ignore[return-value]
        block = self.config.block_when_full if block is None else block
        with s.lock:
            depth = admission.offer(job, wake)
            if depth is None:
                if not block:
                    raise admission.queue_full(None)
                # Backpressure: wait for space (real time: the caller's own patience).
                end = None if timeout is None else time.monotonic() + timeout
                while depth is None:
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise admission.queue_full(timeout)
                    s.space_waiting += 1
                    try:
                        self._space.wait(0.1 if remaining is None else min(remaining, 0.1))
                    finally:
                        s.space_waiting -= 1
                    depth = admission.offer(job, wake)
        if len(self._workers) < self.config.max_concurrency:
            self._start_workers()
        fut: RequestFuture = job.future  # type: ignore[assignment]
        fut._on_cancel = self._on_cancelled
        admission.queued(job, depth)
        return fut

    def call(self, request: Request | str, operation: str | None = None, payload: Any = None,
             **fields: Any) -> Any:
        """Submit and wait: the :class:`Result`, or the request's error raised.

        The calling thread runs the first attempt itself when the request is the next one
        due and there is capacity, which saves a hand-off to a worker; limits, priorities
        and retries are exactly those of :meth:`submit`."""
        block = fields.pop("block", None)
        timeout = fields.pop("timeout", None)
        req = self._coerce(request, operation, payload, fields)
        fut = self._submit(req, block, timeout, wake=False)
        self._help(fut._job)
        return fut.result()

    def _help(self, job: Job) -> None:
        """Work the queue on the caller's thread while ``job`` is still waiting in it."""
        p, s = self._pipeline, self._s
        while job.entry.state == "queued" and not s.stopped:
            failed: list[tuple[Job, BaseException]] = []
            with s.lock:
                picked = p.dispatch.pick(s.clock(), failed)
                if picked is None and job.entry.state == "queued":
                    self._cond.notify()  # not runnable now: leave it to the workers
            for j, exc in failed:
                p.settlement.fail(j, exc)
            if picked is None:
                return
            p.run(picked)

    def stream(self, request: Request | str, operation: str | None = None, payload: Any = None,
               **fields: Any) -> ResultStream:
        """Submit a streaming request and wait for its first chunk."""
        if isinstance(request, Request):
            request = request.evolve(stream=True)
        else:
            fields["stream"] = True
        return self.submit(request, operation, payload, **fields).result()

    def map(self, requests: Iterable[Request], *, return_exceptions: bool = False) -> list[Any]:
        """Run many requests; results in input order.  Waits for queue space rather than
        failing when the queue is full.  With ``return_exceptions`` errors are returned in
        place; otherwise the first failed request's error (in input order) is raised."""
        futures = [self.submit(r, block=True) for r in requests]
        out: list[Any] = []
        for f in futures:
            try:
                out.append(f.result())
            except Exception as exc:
                if not return_exceptions:
                    raise
                out.append(exc)
        return out

    def _on_cancelled(self, fut: RequestFuture) -> None:
        if fut._job is not None:
            self._pipeline.settlement.cancelled(fut._job)

    # ------------------------------------------------------------------ workers
    def _start_workers(self) -> None:
        with self._s.lock:
            if self._reaper is None and not self._s.stopped:
                self._reaper = threading.Thread(target=self._reap, name="accelerate-reaper",
                                                daemon=True)
                self._reaper.start()
            while len(self._workers) < self.config.max_concurrency and not self._s.stopped:
                t = threading.Thread(target=self._worker, name=f"accelerate-worker-{len(self._workers)}",
                                     daemon=True)
                self._workers.append(t)
                t.start()

    def _worker(self) -> None:
        p, s = self._pipeline, self._s
        dispatch, settlement, clock = p.dispatch, p.settlement, s.clock
        while True:
            expired: list[Job] = []
            picked = None
            failed: list[tuple[Job, BaseException]] = []
            with s.lock:
                while True:
                    if s.stopped:
                        return
                    now = clock()
                    expired = dispatch.expire(now)
                    if expired:
                        break
                    picked = dispatch.pick(now, failed)
                    if picked is not None or failed:
                        break
                    self._cond.wait(dispatch.wait_time(now))
            for job in expired:
                settlement.expired(job)
            for job, exc in failed:
                settlement.fail(job, exc)
            if picked is not None:
                try:
                    p.run(picked)
                except BaseException as exc:  # a bug of ours must not lose requests
                    log.exception("ipfs-accelerate: internal error while executing a request")
                    for j in picked.jobs:
                        settlement.finish_error(j, exc, Outcome.ERROR)

    def _reap(self) -> None:
        p, s = self._pipeline, self._s
        while True:
            with s.lock:
                while True:
                    if s.stopped:
                        return
                    now = s.clock()
                    expired = p.dispatch.expire(now)
                    if expired:
                        break
                    if not len(s.queue):
                        # Nothing queued: look again in a second.  Sleeping until woken
                        # would have every submit wake it, though the request is mostly
                        # gone (picked by its caller) by the time the reaper looks.
                        s.reaper_due = now + _REAPER_IDLE
                        self._reaper_cond.wait(_REAPER_IDLE)
                        continue
                    nxt = s.queue.next_wakeup(now)
                    wait = 0.25 if nxt is None else min(0.25, max(0.001, nxt - now))
                    s.reaper_due = now + wait
                    self._reaper_cond.wait(wait)
            for job in expired:
                p.settlement.expired(job)

    # ------------------------------------------------------------------ stats / lifecycle
    def serve_dashboard(self, port: int = 0, host: str = "127.0.0.1",
                        token: str | None = None) -> Any:
        """Serve a live page of this client's numbers on ``host:port`` (loopback by
        default; another host needs ``token``).  Returns the running page (``url``,
        ``close()``).  Needs the ``ipfs-accelerate-dashboard`` extra."""
        page = self._pm.hooks.accelerate_serve_dashboard(client=self, port=port, host=host,
                                                      token=token)
        if page is None:
            raise ConfigError("serve_dashboard", "no installed plugin serves a dashboard "
                                                 "(install the dashboard extra; see "
                                                 "docs/observability.md)")
        return page

    def stats(self) -> StatsSnapshot:
        """Counters, latency percentiles and live gauges per backend and per key."""
        s = self._s
        gauges: dict[str, Any] = {"backends": {}, "keys": {}}
        with s.lock:
            now = s.clock()
            gauges["queue_depth"] = len(s.queue)
            gauges["in_flight"] = s.in_flight
            for name, bs in s.backends.items():
                gauges["backends"][name] = {
                    "queue_depth": s.queue.depth(bs.group),
                    "in_flight": sum(k.in_flight for k in bs.keys),
                    "breaker": bs.breaker.state(now),
                }
                for k in bs.keys:
                    gauges["keys"][(name, k.key_id)] = {
                        "in_flight": k.in_flight,
                        "max_concurrent": k.max_concurrent,
                        "headroom": float(k.limiter.headroom(now)),
                        "healthy": k.healthy,
                        "limiter": k.limiter.snapshot(now),
                    }
        snap = s.costs.annotate(s.stats.snapshot(gauges))
        cache = self._pipeline.cache
        return snap if cache is None else attrs.evolve(snap, cache=cache.stats())

    def invalidate_cache(self, *, key: str | None = None, model: str | None = None,
                         older_than: float | None = None, namespace: str | None = None,
                         all_namespaces: bool = False) -> int:
        """Delete response-cache entries of this client's namespace (or ``namespace``, or
        every one) by entry key, model and/or age in seconds; all of them when no criterion
        is given.  Returns how many (0 for a client without a cache)."""
        cache = self._pipeline.cache
        if cache is None:
            return 0
        return cache.invalidate(key=key, model=model, older_than=older_than,
                                namespace=namespace, all_namespaces=all_namespaces)

    def reset_stats(self) -> None:
        self._s.stats.reset()
        self._s.costs.stats.reset()

    def breaker_state(self, backend: str) -> str:
        return self._s.backends[backend].breaker.state(self._s.clock())

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests.  With ``wait`` finish everything queued and in flight
        (up to ``timeout``); whatever remains is failed with :class:`ClientClosedError`."""
        s = self._s
        end = None if timeout is None else time.monotonic() + timeout  # the caller's patience
        with s.lock:
            if s.stopped:
                return
            s.closing = True
            self._space.notify_all()
            if wait:
                while len(s.queue) or s.in_flight:
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._cond.wait(min(remaining, 0.1) if remaining is not None else 0.1)
            leftovers = []
            while True:
                e = s.queue.pop(float("inf"))
                if e is None:
                    break
                leftovers.append(e)
            s.stopped = True
            self._cond.notify_all()
            self._reaper_cond.notify_all()
        for e in leftovers:
            self._pipeline.settlement.finish_error(
                e.payload, ClientClosedError("the client was closed before this request ran"),
                Outcome.CANCELLED)
        for t in self._workers:
            if t is not threading.current_thread():
                t.join(timeout=5)
        self._transport.close()
        self._s.costs.close()  # settlements a shared ledger has not taken yet
        if self._pipeline.cache is not None:
            self._pipeline.cache.close()
        if self._owns_store:  # only what this client made: a store passed in is shared
            try:
                self._store.close()
            except Exception as exc:
                log.warning("ipfs-accelerate: closing the state store failed: %s", exc)

    def add_observer(self, observer: Any) -> None:
        """Watch this client's events from now on: ``observer`` has some of the methods
        ``accelerate_on_queued/started/retried/finished/breaker_changed(event)``.  One that
        raises is logged and ignored."""
        self._pipeline.monitor.add(observer)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client backends={sorted(self._s.backends)} max_concurrency={self.config.max_concurrency}>"


__all__ = ["Client", "Priority", "Request"]
