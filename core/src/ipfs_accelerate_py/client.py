"""The pipeline: what the client does for every request.

``submit`` puts a request in the bounded priority queue and returns a
``concurrent.futures.Future``.  ``max_concurrency`` worker threads take the best request
whose endpoint's breaker lets it through and for which some key has capacity now
(concurrency limit + rate limiter), let the strategy pick the key, send it through the
backend plugin, and then resolve the future, or put the request back in the queue to wait
out a backoff (its key slot is free meanwhile).  Every request ends exactly once: with a
result, a classified error, a deadline error, or cancellation.
"""

from __future__ import annotations

import copy
import itertools
import logging
import random
import threading
import time
from concurrent.futures import Future
from typing import Any, Iterable, Mapping, Sequence

import attrs

from .backend import Backend
from .config import BackendConfig, ClientConfig
from .errors import (
    BREAKER_FAILURES,
    AccelerateError,
    AuthError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    DeadlineExceeded,
    ErrorClass,
    PluginError,
    ProviderError,
    QueueFullError,
    TransientError,
)
from .events import (
    BreakerChanged,
    Outcome,
    RequestFinished,
    RequestQueued,
    RequestRetried,
    RequestStarted,
)
from .http import Transport, redirect_error
from .retry import capped_retry_after
from .keys import ApiKey
from .futures import RequestFuture
from .plugins import PluginManager, get_plugin_manager
from .request import Priority, Request
from .results import IncompleteStream, Result, ResultStream, Usage
from .selection import KeyCandidate
from .stats import StatsCollector, StatsSnapshot

log = logging.getLogger("ipfs_accelerate")

_MAX_WAIT = 0.5  # upper bound of an idle worker's sleep: a safety net against lost wakeups
_CLOSED = "closed"


class _Job:
    """One submitted request and its progress through the pipeline."""

    __slots__ = ("request", "bstate", "future", "submitted", "deadline", "attempts",
                 "outage_attempts", "tokens", "last_error", "entry", "running", "key_id",
                 "acquired_at")

    def __init__(self, request: Request, bstate: _BackendState, future: Future,
                 submitted: float, deadline: float | None) -> None:
        self.request = request
        self.bstate = bstate
        self.future = future
        self.submitted = submitted
        self.deadline = deadline
        self.attempts = 0
        self.outage_attempts = 0
        self.tokens: int | None = None
        self.last_error: BaseException | None = None
        self.entry: Any = None
        self.running = False
        self.key_id: str | None = None
        self.acquired_at: float | None = None  # when the limiter admitted the last attempt


class _BackendState:
    __slots__ = ("name", "backend", "config", "keys", "strategy", "group", "breaker", "budget",
                 "key_names", "needs_tokens")

    def __init__(self, backend: Backend, keys: list[KeyCandidate], strategy: Any, breaker: Any,
                 budget: Any) -> None:
        self.name = backend.name
        self.backend = backend
        self.config = backend.config
        self.keys = keys
        self.strategy = strategy
        self.group = backend.endpoint_id()
        self.breaker = breaker
        self.budget = budget
        self.key_names = {k.key_id for k in keys}
        self.needs_tokens = any(_has_token_limit(k.limiter) for k in keys)


def _stamp(result: Result, backend: str, key_id: str, attempts: int, request_id: str) -> None:
    # The backend just built this Result for us alone: fill in the pipeline's fields in
    # place (cheaper than attrs.evolve on the hot path).  An id the backend set is the
    # provider's; ours always goes in ``request_id``.
    theirs = result.request_id
    if theirs and theirs != request_id and result.provider_request_id is None:
        object.__setattr__(result, "provider_request_id", theirs)
    object.__setattr__(result, "backend", backend)
    object.__setattr__(result, "key_id", key_id)
    object.__setattr__(result, "attempts", attempts)
    object.__setattr__(result, "request_id", request_id)


def _error_for(err: ProviderError, job: _Job, shared: bool) -> ProviderError:
    """The error as this job's: our request id in ``request_id`` (a backend may have put
    the provider's there), and a copy of its own when a batch shares one error."""
    if shared:
        original = err
        err = copy.copy(err)
        err.response, err.key_id, err.attempts = original.response, original.key_id, original.attempts
    ours = job.request.request_id
    if err.request_id and err.request_id != ours and err.provider_request_id is None:
        err.provider_request_id = err.request_id
    err.request_id = ours
    err.attempts = job.attempts
    return err


def _has_token_limit(limiter: Any) -> bool:
    snap = limiter.snapshot(time.monotonic())
    return snap.get("tokens_per_minute") is not None


def _as_backend_configs(backends: Any) -> list[BackendConfig | Backend]:
    if isinstance(backends, (str, BackendConfig, Backend)):
        backends = [backends]
    if isinstance(backends, Mapping):
        out: list[BackendConfig | Backend] = []
        for name, cfg in backends.items():
            if isinstance(cfg, (BackendConfig, Backend)):
                out.append(cfg)
            elif isinstance(cfg, Mapping):
                out.append(BackendConfig(name=name, **cfg))
            else:
                raise ConfigError("backends", f"{name!r}: expected a BackendConfig or a mapping")
        return out
    out = []
    for b in backends:
        if isinstance(b, str):
            out.append(BackendConfig(name=b))
        elif isinstance(b, (BackendConfig, Backend)):
            out.append(b)
        else:
            raise ConfigError("backends", f"expected a name, BackendConfig or Backend, got {type(b).__name__}")
    return out


class Client:
    """The resilient pipeline in front of one or more backends.

    >>> client = Client([BackendConfig("openai", keys=["test-key-1", "test-key-2"])])
    >>> client.call("openai", "chat", {"model": "gpt-4o-mini", "messages": [...]})

    Safe to use from many threads at once.  Use it as a context manager, or call
    :meth:`close`, to finish queued work and stop the workers.
    """

    def __init__(self, backends: Any, config: ClientConfig | None = None, *,
                 plugin_manager: PluginManager | None = None, seed: int | None = None,
                 transport: Transport | None = None, **config_changes: Any) -> None:
        config = config or ClientConfig()
        if config_changes:
            try:
                config = attrs.evolve(config, **config_changes)
            except TypeError as exc:
                raise ConfigError("config", str(exc)) from None
        self.config = config
        self._pm = plugin_manager or get_plugin_manager()
        hooks = self._pm.hooks
        self._hooks = hooks
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        # The reaper fails queued requests whose deadline passed even while every worker
        # is busy in a long call; it sleeps while the queue is empty.
        self._reaper_cond = threading.Condition(self._lock)
        self._reaper: threading.Thread | None = None
        self._space_waiting = 0
        self._seq = itertools.count()
        self._stats = StatsCollector(config.latency_samples)
        self._store = hooks.accelerate_make_state_store(config=config)
        self._queue = hooks.accelerate_make_queue(config=config)
        # With only the core's default implementation, call the strategy directly: a hook
        # call per dispatch costs more than the selection itself.
        self._select_via_hook = len(hooks.accelerate_select_key.get_hookimpls()) > 1
        self._monitor = {name: bool(getattr(hooks, name).get_hookimpls()) for name in (
            "accelerate_on_queued", "accelerate_on_started", "accelerate_on_retried",
            "accelerate_on_finished", "accelerate_on_breaker_changed")}
        self._backends: dict[str, _BackendState] = {}
        self._groups: dict[str, _BackendState] = {}
        for item in _as_backend_configs(backends):
            self._add_backend(item)
        if not self._backends:
            raise ConfigError("backends", "at least one backend is required")
        # Any object with Transport's send()/close() may replace the pooled session
        # (an application's own session settings, an in-memory transport in tests).
        self._transport = transport or Transport(pool_size=config.max_concurrency)
        self._workers: list[threading.Thread] = []
        self._in_flight = 0
        self._closing = False
        self._stop = False

    # ------------------------------------------------------------------ set-up
    def _add_backend(self, item: BackendConfig | Backend) -> None:
        if isinstance(item, Backend):
            backend = item
        else:
            cls = self._pm.backend_class(item.name)
            backend = cls(item)
        cfg = backend.config
        name = backend.name
        if not self.config.send_request_id:
            backend.send_request_id = False
        if name in self._backends:
            raise ConfigError("backends", f"backend {name!r} configured twice")
        keys: Sequence[ApiKey] = cfg.keys or tuple(type(backend).keys_from())
        if not keys:
            if backend.key_required:
                hint = " or set " + " / ".join(backend.env_keys) if backend.env_keys else ""
                raise ConfigError("keys", f"backend {name!r} needs an API key: pass keys=[...]{hint}")
            keys = (ApiKey(secret=None, name="anonymous"),)
        now = time.monotonic()
        candidates: list[KeyCandidate] = []
        seen: set[str] = set()
        for i, key in enumerate(keys):
            if key.key_id in seen:
                raise ConfigError("keys", f"backend {name!r} has two keys named {key.key_id!r}")
            seen.add(key.key_id)
            limiter = self._store.limiter(
                f"{name}/{key.key_id}",
                key.requests_per_minute or cfg.requests_per_minute,
                key.tokens_per_minute or cfg.tokens_per_minute,
                key.burst or cfg.burst,
                now,
            )
            candidates.append(KeyCandidate(key, i, key.max_concurrent or cfg.max_concurrent_per_key,
                                           limiter))
        strategy = self._resolve_strategy()
        group = backend.endpoint_id()
        breaker = self._hooks.accelerate_make_breaker(
            endpoint=group, policy=self.config.breaker, store=self._store,
            on_transition=self._on_breaker_transition)
        from .retry import RetryBudget

        rp = self.config.retry
        budget = RetryBudget(rp.budget_ratio, rp.budget_min_per_second, rp.budget_window, now)
        state = _BackendState(backend, candidates, strategy, breaker, budget)
        self._backends[name] = state
        self._groups[state.group] = state

    def _resolve_strategy(self) -> Any:
        name = self.config.strategy
        if name is None:
            name = "least-loaded" if "least-loaded" in self._pm.strategies() else "first-available"
        factory = self._pm.strategy_factory(name)
        try:
            return factory()
        except Exception as exc:
            raise PluginError(name, "strategy factory", exc) from exc

    @property
    def backends(self) -> dict[str, Backend]:
        return {n: s.backend for n, s in self._backends.items()}

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
            if len(self._backends) != 1:
                raise ConfigError("backend", f"request names no backend; configured: "
                                  f"{', '.join(sorted(self._backends))}")
            req = req.evolve(backend=next(iter(self._backends)))
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

    def _submit(self, req: Request, block: bool | None, timeout: float | None, wake: bool) -> Future:
        bstate = self._backends.get(req.backend or "")
        if bstate is None:
            raise ConfigError("backend", f"backend {req.backend!r} is not configured; configured: "
                              f"{', '.join(sorted(self._backends))}")
        bstate.backend.check(req)
        if req.key is not None and req.key not in bstate.key_names:
            raise ConfigError("key", f"backend {req.backend!r} has no key named {req.key!r}")
        block = self.config.block_when_full if block is None else block
        now = time.monotonic()
        limit = req.deadline if req.deadline is not None else self.config.default_deadline
        deadline = now + limit if limit is not None else None
        fut = RequestFuture(req.request_id)
        job = _Job(req, bstate, fut, now, deadline)
        from .queue import QueueEntry

        entry = QueueEntry(int(req.priority), next(self._seq), bstate.group, job,
                           deadline=deadline, batch_key=bstate.backend.batch_key(req))
        job.entry = entry
        fut._job = job  # for cancellation
        with self._cond:
            if self._closing:
                raise ClientClosedError("the client is closed")
            if self.config.fail_fast and not bstate.breaker.can_dispatch(now):
                raise CircuitOpenError(bstate.group, request_id=req.request_id)
            if self._queue.full():
                if not block:
                    raise QueueFullError(f"request queue is full ({len(self._queue)} requests; "
                                         f"queue_size={self.config.queue_size})")
                end = None if timeout is None else now + timeout
                while self._queue.full():
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise QueueFullError(f"request queue still full after {timeout} s")
                    self._space_waiting += 1
                    try:
                        self._space.wait(0.1 if remaining is None else min(remaining, 0.1))
                    finally:
                        self._space_waiting -= 1
                    if self._closing:
                        raise ClientClosedError("the client is closed")
            self._queue.push(entry, time.monotonic())
            depth = len(self._queue)
            if wake:
                self._cond.notify()
            if depth == 1 or deadline is not None:
                self._reaper_cond.notify()
        if len(self._workers) < self.config.max_concurrency:
            self._start_workers()
        fut._on_cancel = self._on_cancelled
        if self._monitor["accelerate_on_queued"]:
            self._emit("accelerate_on_queued", RequestQueued(
                req.request_id, bstate.name, req.operation, int(req.priority), depth, now))
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

    def _help(self, job: _Job) -> None:
        """Work the queue on the caller's thread while ``job`` is still waiting in it."""
        while job.entry.state == "queued" and not self._stop:
            failed: list[tuple[_Job, BaseException]] = []
            with self._cond:
                picked = self._pick(time.monotonic(), failed)
                if picked is None and job.entry.state == "queued":
                    self._cond.notify()  # not runnable now: leave it to the workers
            for j, exc in failed:
                self._fail(j, exc)
            if picked is None:
                return
            self._execute(*picked)

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
        # A caller cancelled a queued request: take it out now, not when it surfaces.
        job = fut._job
        with self._cond:
            if job is not None and self._queue.remove(job.entry):
                self._space.notify()
        if job is not None:
            self._finished(job, Outcome.CANCELLED, None, 1)

    # ------------------------------------------------------------------ workers
    def _start_workers(self) -> None:
        with self._lock:
            if self._reaper is None and not self._stop:
                self._reaper = threading.Thread(target=self._reap, name="accelerate-reaper",
                                                daemon=True)
                self._reaper.start()
            while len(self._workers) < self.config.max_concurrency and not self._stop:
                t = threading.Thread(target=self._worker, name=f"accelerate-worker-{len(self._workers)}",
                                     daemon=True)
                self._workers.append(t)
                t.start()

    def _worker(self) -> None:
        while True:
            expired: list[Any] = []
            picked = None
            failed: list[tuple[_Job, BaseException]] = []
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    expired = self._queue.expire(now)
                    if expired:
                        self._space.notify(len(expired))
                        break
                    picked = self._pick(now, failed)
                    if picked is not None or failed:
                        break
                    self._cond.wait(self._wait_time(now))
            for entry in expired:
                self._expire_job(entry.payload)
            for job, exc in failed:
                self._fail(job, exc)
            if picked is not None:
                entries, key, epoch = picked
                try:
                    self._execute(entries, key, epoch)
                except BaseException as exc:  # a bug of ours must not lose requests
                    log.exception("ipfs-accelerate: internal error while executing a request")
                    for e in entries:
                        self._finish_error(e.payload, exc, Outcome.ERROR)

    def _reap(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    expired = self._queue.expire(now)
                    if expired:
                        self._space.notify(len(expired))
                        break
                    if not len(self._queue):
                        self._reaper_cond.wait()
                        continue
                    nxt = self._queue.next_wakeup(now)
                    wait = 0.25 if nxt is None else min(0.25, max(0.001, nxt - now))
                    self._reaper_cond.wait(wait)
            for entry in expired:
                self._expire_job(entry.payload)

    def _expire_job(self, job: _Job) -> None:
        self._finish_error(job, DeadlineExceeded(
            f"deadline passed after {job.attempts} attempt(s) while waiting in the queue",
            request_id=job.request.request_id, last_error=job.last_error), Outcome.DEADLINE)

    def _group_ready(self, group: str, now: float) -> bool:
        bs = self._groups[group]
        if not bs.breaker.can_dispatch(now):
            return False
        for k in bs.keys:
            if k.healthy and k.in_flight < k.max_concurrent and k.limiter.wait_time(0, now) <= 0:
                return True
        return not any(k.healthy for k in bs.keys)  # let it surface to fail with the auth error

    def _pick(self, now: float, failed: list[tuple[_Job, BaseException]]) -> Any:
        if self._in_flight >= self.config.max_concurrency:
            return None  # workers plus helping callers never exceed the client's limit
        skipped = []
        chosen = None
        ready_cache: dict[str, bool] = {}

        def ready(group: str) -> bool:
            r = ready_cache.get(group)
            if r is None:
                r = ready_cache[group] = self._group_ready(group, now)
            return r

        for _ in range(64):
            entry = self._queue.pop(now, ready)
            if entry is None:
                break
            job: _Job = entry.payload
            if job.future.done():
                continue
            key, error = self._choose_key(job, now)
            if error is not None:
                failed.append((job, error))
                break
            if key is None:
                skipped.append(entry)
                continue
            chosen = (entry, key)
            break
        for e in skipped:
            self._queue.requeue(e, now)
        if chosen is None:
            return None
        entry, key = chosen
        entries = [entry]
        bs: _BackendState = entry.payload.bstate
        if entry.batch_key is not None:
            limit = bs.backend.max_batch_size(entry.payload.request) - 1
            if limit > 0:
                entries.extend(e for e in self._queue.pop_batch(entry, limit, now)
                               if not e.payload.future.done())
        live = []
        for e in entries:
            job = e.payload
            if not job.running:
                if not job.future.set_running_or_notify_cancel():
                    continue
                job.running = True
                bs.budget.record_request(now)
            live.append(e)
        if not live:
            key.limiter.release_unsent(entry.payload.tokens or 0, now, acquired_at=now)
            return None
        key.in_flight += 1
        key.dispatched += 1
        self._in_flight += 1
        epoch = bs.breaker.on_dispatch(now)
        return live, key, epoch

    def _choose_key(self, job: _Job, now: float) -> tuple[KeyCandidate | None, BaseException | None]:
        bs = job.bstate
        if job.tokens is None:
            job.tokens = bs.backend.estimate_tokens(job.request) if bs.needs_tokens else 0
        tokens = job.tokens
        pinned = job.request.key
        cands = []
        any_healthy = False
        for k in bs.keys:
            if not k.healthy or (pinned is not None and k.key_id != pinned):
                continue
            any_healthy = True
            if k.in_flight >= k.max_concurrent or k.limiter.wait_time(tokens, now) > 0:
                continue
            k._now = now
            cands.append(k)
        if not any_healthy:
            err = job.last_error if isinstance(job.last_error, AuthError) else AuthError(
                f"every key of backend {bs.name!r} was rejected by the provider", backend=bs.name)
            return None, err
        if not cands:
            return None, None
        try:
            if self._select_via_hook:
                chosen = self._hooks.accelerate_select_key(request=job.request, candidates=cands,
                                                           strategy=bs.strategy)
            else:
                chosen = bs.strategy.select(job.request, cands)
        except Exception as exc:
            return None, PluginError(self._plugin_name("accelerate_select_key"), "select_key", exc)
        if chosen is None:
            return None, None
        if chosen not in cands:
            return None, PluginError(self._plugin_name("accelerate_select_key"), "select_key",
                                     ValueError("returned a key that is not among the candidates"))
        if not chosen.limiter.acquire(tokens, now):
            return None, None
        job.acquired_at = now
        return chosen, None

    def _plugin_name(self, hook: str) -> str:
        impls = getattr(self._hooks, hook).get_hookimpls()
        return impls[-1].plugin_name if impls else "?"

    def _wait_time(self, now: float) -> float | None:
        if not len(self._queue):
            return None
        wait = _MAX_WAIT
        nxt = self._queue.next_wakeup(now)
        if nxt is not None:
            wait = min(wait, max(0.0, nxt - now))
        for group in self._queue.groups():
            bs = self._groups[group]
            t = bs.breaker.time_until_dispatch(now)
            if t > 0:
                wait = min(wait, t)
                continue
            for k in bs.keys:
                if k.healthy and k.in_flight < k.max_concurrent:
                    wait = min(wait, k.limiter.wait_time(0, now))
        return max(wait, 0.0005)

    # ------------------------------------------------------------------ one attempt
    def _execute(self, entries: list[Any], key: KeyCandidate, epoch: int) -> None:
        jobs: list[_Job] = [e.payload for e in entries]
        bs = jobs[0].bstate
        backend = bs.backend
        window = bs.config.batch_window
        if entries[0].batch_key is not None and window > 0:
            limit = backend.max_batch_size(jobs[0].request)
            if len(jobs) < limit:
                # Give requests queued close together a moment to join this call; bounded,
                # so a lone request never waits longer than the window.
                time.sleep(window)
                with self._cond:
                    more = self._queue.pop_batch(entries[0], limit - len(jobs), time.monotonic())
                    for e in more:
                        j = e.payload
                        if j.future.done() or (not j.running and not j.future.set_running_or_notify_cancel()):
                            continue
                        if not j.running:
                            j.running = True
                            bs.budget.record_request(time.monotonic())
                        jobs.append(j)
        if self._breaker_opened(bs, key, jobs):
            return
        now = time.monotonic()
        for j in jobs:
            j.attempts += 1
            j.key_id = key.key_id
        if self._monitor["accelerate_on_started"]:
            for j in jobs:
                self._emit("accelerate_on_started", RequestStarted(
                    j.request.request_id, bs.name, j.request.operation, key.key_id, j.attempts,
                    now - j.submitted, now))
        try:
            if len(jobs) > 1:
                request = backend.merge_batch([j.request for j in jobs])
            else:
                request = jobs[0].request
            hints: list[Any] = []
            result = self._attempt(bs, request, key, jobs, epoch, hints)
        except ProviderError as err:
            self._on_failure(jobs, key, err, epoch, hints[0] if hints else None)
            return
        except (PluginError, AccelerateError) as err:
            self._release(key, bs, neutral=epoch)
            for j in jobs:
                self._fail(j, err)
            return
        except Exception as exc:  # a bug in the backend plugin: attribute it, don't retry
            err = PluginError(bs.name, "backend", exc)
            err.__cause__ = exc
            self._release(key, bs, neutral=epoch)
            for j in jobs:
                self._finish_error(j, err, Outcome.PLUGIN_ERROR)
            return
        if isinstance(result, ResultStream):
            return  # the stream releases its key when it closes
        usage = result.usage
        if len(jobs) > 1:
            try:
                parts = backend.split_batch([j.request for j in jobs], result)
                if len(parts) != len(jobs):
                    raise TransientError(f"batch answer has {len(parts)} results for {len(jobs)} "
                                         f"requests", backend=bs.name)
            except ProviderError as err:
                self._on_failure(jobs, key, err, epoch, hints[0] if hints else None)
                return
            except Exception as exc:
                self._release(key, bs, neutral=epoch)
                err = PluginError(bs.name, "split_batch", exc)
                for j in jobs:
                    self._finish_error(j, err, Outcome.PLUGIN_ERROR)
                return
        else:
            parts = [result]
        self._release(key, bs, usage=usage, estimated=sum((j.tokens or 0) for j in jobs),
                      success=epoch, info=hints[0] if hints else None,
                      acquired_at=jobs[0].acquired_at)
        for j, r in zip(jobs, parts):
            _stamp(r, bs.name, key.key_id, j.attempts, j.request.request_id)
            if j.future.done():
                continue
            j.future.set_result(r)
            self._finished(j, Outcome.SUCCESS, r.usage if len(jobs) > 1 else usage, len(jobs))

    def _breaker_opened(self, bs: _BackendState, key: KeyCandidate, jobs: list[_Job]) -> bool:
        """The breaker opened between picking these requests and sending them (another
        thread's failure tripped it): put them back unsent, spending no attempt, so an
        outage gets probes only, not the stragglers of the moment it began."""
        with self._cond:
            now = time.monotonic()
            if self._stop or bs.breaker.state(now) != "open":
                return False
            key.in_flight -= 1
            self._in_flight -= 1
            key.limiter.release_unsent(sum(j.tokens or 0 for j in jobs), now,
                                       acquired_at=jobs[0].acquired_at)
            for j in jobs:
                j.entry.not_before = now
                self._queue.requeue(j.entry, now)
            self._cond.notify()
        return True

    def _attempt(self, bs: _BackendState, request: Request, key: KeyCandidate,
                 jobs: list[_Job], epoch: int, hints: list[Any]) -> Result | ResultStream:
        """Send one attempt.  Takes no lock for a plain request: the caller books the
        outcome (and the rate-limit ``hints`` this appends) in one locked section."""
        backend = bs.backend
        cfg = bs.config
        http = backend.build_request(request, key.key)
        read = cfg.read_timeout
        deadlines = [j.deadline for j in jobs if j.deadline is not None]
        if deadlines:
            read = max(0.001, min(read, min(deadlines) - time.monotonic()))
        # -- bounds (issue 13.6/13.7): the transport reads the answer within the size
        # limits and ends the attempt at the earliest of the deadlines and its own timeout.
        if cfg.attempt_timeout is not None:
            deadlines.append(time.monotonic() + cfg.attempt_timeout)
        http.apply_bounds(cfg.max_response_bytes, cfg.max_line_bytes,
                          min(deadlines) if deadlines else None)
        resp = self._transport.send(http, (cfg.connect_timeout, read), backend=bs.name,
                                    request_id=request.request_id)
        try:
            info = backend.rate_limit_info(resp)
            if info is not None:
                hints.append(info)
            if not 200 <= resp.status_code < 300:  # redirects are not followed: an error too
                error = backend.classify_error(request, resp)
                if 300 <= resp.status_code < 400:  # -- issue 13.8: never retried
                    error = redirect_error(error, resp)
                raise error
            if not request.stream:
                return backend.parse_response(request, resp)
            chunks = backend.parse_stream(request, resp)
            try:
                first = next(chunks)
            except StopIteration:
                raise TransientError("stream ended before its first chunk", backend=bs.name,
                                     status=resp.status_code) from None
            except IncompleteStream as exc:
                raise TransientError(f"stream ended before its first chunk: {exc}",
                                     backend=bs.name, status=resp.status_code) from None
            except ProviderError:
                raise
            except AccelerateError:
                raise
            except Exception as exc:
                raise TransientError(f"stream broke before its first chunk: {type(exc).__name__}",
                                     backend=bs.name, status=resp.status_code) from exc
        except BaseException:
            resp.close()
            raise
        job = jobs[0]
        with self._lock:
            now = time.monotonic()
            if hints:
                key.limiter.observe(hints[0], now)
            bs.breaker.record_success(now, epoch)
            key.limiter.observe_success(now)
        stream = ResultStream(first, chunks, request_id=request.request_id, backend=bs.name,
                              key_id=key.key_id, attempts=job.attempts, closer=resp.close,
                              on_close=lambda err, usage: self._stream_closed(job, key, err, usage))
        job.future.set_result(stream)
        return stream

    def _stream_closed(self, job: _Job, key: KeyCandidate, error: BaseException | None,
                       usage: Usage | None) -> None:
        self._release(key, job.bstate, usage=usage, estimated=job.tokens or 0,
                      acquired_at=job.acquired_at)
        outcome = Outcome.SUCCESS if error is None else Outcome.ERROR
        self._finished(job, outcome, usage, 1, error=error)

    def _release(self, key: KeyCandidate, bs: _BackendState, *, usage: Usage | None = None,
                 estimated: int = 0, neutral: int | None = None, success: int | None = None,
                 info: Any = None, acquired_at: float | None = None) -> None:
        """Free the key slot and book the attempt's outcome in one locked section.
        ``success`` / ``neutral`` carry the dispatch epoch when the attempt still owes the
        breaker its outcome (neutral: a plugin failure, neither success nor failure)."""
        with self._cond:
            key.in_flight -= 1
            self._in_flight -= 1
            now = time.monotonic()
            if info is not None:
                key.limiter.observe(info, now)
            if success is not None:
                bs.breaker.record_success(now, success)
                key.limiter.observe_success(now)
            elif neutral is not None:
                bs.breaker.record_neutral(now, neutral)
            if usage is not None and bs.needs_tokens:
                key.limiter.reconcile(estimated, usage.total_tokens, now, acquired_at=acquired_at)
            if len(self._queue):
                self._cond.notify()  # a slot freed up for queued work

    # ------------------------------------------------------------------ failures
    def _on_failure(self, jobs: list[_Job], key: KeyCandidate, err: ProviderError, epoch: int,
                    info: Any = None) -> None:
        bs = jobs[0].bstate
        now = time.monotonic()
        err.key_id = key.key_id
        err.backend = err.backend or bs.name
        cls = err.error_class
        with self._cond:
            key.in_flight -= 1
            self._in_flight -= 1
            if info is not None:
                key.limiter.observe(info, now)
            if cls in BREAKER_FAILURES:
                bs.breaker.record_failure(now, epoch)
            else:
                bs.breaker.record_neutral(now, epoch)
            if cls is ErrorClass.RATE_LIMITED:
                # -- retry-after (issue 20.7): the key's cooldown obeys max_retry_after too
                key.limiter.observe_429(capped_retry_after(self.config.retry, err.retry_after), now)
            other_keys = any(k.healthy and k is not key for k in bs.keys)
            # 403 is usually a permission on a resource (a bucket, a model), not a bad key;
            # a backend that knows better says so in ``key_rejected``.
            rejected = cls is ErrorClass.AUTH and (
                err.key_rejected if err.key_rejected is not None else err.status != 403)
            if rejected and other_keys and jobs[0].request.key is None:
                # Multiplexing: a rejected key is taken out of rotation; others carry on.
                key.healthy = False
                key.disabled_reason = f"{err.status} {err.code or ''}".strip()
                log.warning("ipfs-accelerate: backend %s key %s disabled after an auth error (%s)",
                            bs.name, key.key_id, key.disabled_reason)
            outage = (cls in BREAKER_FAILURES and not self.config.fail_fast
                      and bs.breaker.state(now) != "closed")
            self._cond.notify_all()
        for j in jobs:
            jerr = _error_for(err, j, shared=len(jobs) > 1)
            j.last_error = jerr
            self._after_failure(j, key, jerr, now, outage,
                                reroute=(rejected and other_keys and j.request.key is None))

    def _after_failure(self, job: _Job, key: KeyCandidate, err: ProviderError, now: float,
                       outage: bool, reroute: bool) -> None:
        bs = job.bstate
        if job.future.done():
            return
        if reroute:
            self._requeue(job, now, 0.0, err, key, "key rejected; trying another key")
            return
        if outage and job.attempts < self.config.retry.max_attempts:
            # The endpoint is down: wait in the queue for the breaker, without spending
            # retry budget.  The deadline still bounds the wait.
            # -- attempts (issue 13.1): waiting is free, but this attempt was sent and
            # failed, so it counts against max_attempts like any other (checked above).
            job.outage_attempts += 1
            # Behind its peers of the same priority: the breaker's probes take turns,
            # rather than one request spending all its attempts on them.
            job.entry.seq = next(self._seq)
            self._requeue(job, now, 0.0, err, key, "waiting for the circuit breaker")
            return
        if self.config.fail_fast and bs.breaker.state(now) == "open":
            self._finish_error(job, CircuitOpenError(bs.group, request_id=job.request.request_id),
                               Outcome.ERROR)
            return
        try:
            decision = self._hooks.accelerate_backoff(
                request=job.request, attempt=job.attempts, error=err,
                policy=self.config.retry, now=now, deadline=job.deadline, rng=self._rng)
        except Exception as exc:
            self._finish_error(job, PluginError(self._plugin_name("accelerate_backoff"), "backoff",
                                                exc), Outcome.PLUGIN_ERROR)
            return
        if decision is None or not decision.retry:
            self._finish_error(job, err, Outcome.ERROR)
            return
        delay = decision.delay
        if not bs.budget.try_spend(now):
            # Over the retry budget: the retry is throttled, not dropped.
            delay = max(delay, self.config.retry.budget_window / 10)
            if job.deadline is not None and now + delay >= job.deadline:
                self._finish_error(job, err, Outcome.ERROR)
                return
        self._requeue(job, now, delay, err, key, decision.reason)

    def _requeue(self, job: _Job, now: float, delay: float, err: ProviderError,
                 key: KeyCandidate, reason: str) -> None:
        entry = job.entry
        entry.not_before = now + delay
        with self._cond:
            if self._stop:
                pass
            else:
                self._queue.requeue(entry, now)
                self._cond.notify()
        if self._stop:
            self._finish_error(job, ClientClosedError("the client was closed"), Outcome.CANCELLED)
            return
        self._stats.retried(job.bstate.name, key.key_id, err.error_class is ErrorClass.RATE_LIMITED)
        if self._monitor["accelerate_on_retried"]:
            self._emit("accelerate_on_retried", RequestRetried(
                job.request.request_id, job.bstate.name, key.key_id, job.attempts,
                err.error_class.value, err.status, delay, now))

    # ------------------------------------------------------------------ completion
    def _fail(self, job: _Job, exc: BaseException) -> None:
        self._finish_error(job, exc, Outcome.PLUGIN_ERROR if isinstance(exc, PluginError)
                           else Outcome.ERROR)

    def _finish_error(self, job: _Job, exc: BaseException, outcome: Outcome) -> None:
        if job.future.done():
            return
        try:
            job.future.set_exception(exc)
        except Exception:  # cancelled meanwhile
            return
        if isinstance(exc, ProviderError) and exc.error_class is ErrorClass.RATE_LIMITED:
            self._stats.rate_limited(job.bstate.name, job.key_id)
        self._finished(job, outcome, None, 1, error=exc)

    def _finished(self, job: _Job, outcome: Outcome, usage: Usage | None, batch_size: int,
                  error: BaseException | None = None) -> None:
        now = time.monotonic()
        latency = now - job.submitted
        self._stats.finished(job.bstate.name, job.key_id, outcome, latency, job.attempts, usage)
        self._wake_space()
        if self._monitor["accelerate_on_finished"]:
            self._emit("accelerate_on_finished", RequestFinished(
                job.request.request_id, job.bstate.name, job.request.operation, outcome, latency,
                job.key_id, job.attempts,
                error_class=error.error_class.value if isinstance(error, ProviderError) else (
                    type(error).__name__ if error is not None else None),
                error=str(error) if error is not None else None, usage=usage,
                batch_size=batch_size, time=now))

    def _wake_space(self) -> None:
        # Only take the lock when someone waits for queue space or for close() to drain.
        if self._space_waiting or self._closing:
            with self._cond:
                self._space.notify()
                self._cond.notify_all()

    def _on_breaker_transition(self, endpoint: str, old: str, new: str, now: float) -> None:
        log.info("ipfs-accelerate: breaker %s %s -> %s", endpoint, old, new)
        if self._monitor.get("accelerate_on_breaker_changed"):
            self._emit("accelerate_on_breaker_changed", BreakerChanged(endpoint, old, new, now))

    def _emit(self, hook: str, event: Any) -> None:
        try:
            getattr(self._hooks, hook)(event=event)
        except Exception as exc:  # a broken monitor must not lose or fail work
            log.warning("ipfs-accelerate: monitoring hook %s raised %s: %s", hook,
                        type(exc).__name__, exc)

    # ------------------------------------------------------------------ stats / lifecycle
    def stats(self) -> StatsSnapshot:
        """Counters, latency percentiles and live gauges per backend and per key."""
        now = time.monotonic()
        gauges: dict[str, Any] = {"backends": {}, "keys": {}}
        with self._lock:
            gauges["queue_depth"] = len(self._queue)
            gauges["in_flight"] = self._in_flight
            for name, bs in self._backends.items():
                gauges["backends"][name] = {
                    "queue_depth": self._queue.depth(bs.group),
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
        return self._stats.snapshot(gauges)

    def reset_stats(self) -> None:
        self._stats.reset()

    def breaker_state(self, backend: str) -> str:
        return self._backends[backend].breaker.state(time.monotonic())

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests.  With ``wait`` finish everything queued and in flight
        (up to ``timeout``); whatever remains is failed with :class:`ClientClosedError`."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._stop:
                return
            self._closing = True
            self._space.notify_all()
            if wait:
                while len(self._queue) or self._in_flight:
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._cond.wait(min(remaining, 0.1) if remaining is not None else 0.1)
            leftovers = []
            while True:
                e = self._queue.pop(float("inf"))
                if e is None:
                    break
                leftovers.append(e)
            self._stop = True
            self._cond.notify_all()
            self._reaper_cond.notify_all()
        for e in leftovers:
            self._finish_error(e.payload, ClientClosedError("the client was closed before this "
                                                            "request ran"), Outcome.CANCELLED)
        for t in self._workers:
            if t is not threading.current_thread():
                t.join(timeout=5)
        self._transport.close()
        try:
            self._store.close()  # a shared store's connections and threads
        except Exception as exc:
            log.warning("ipfs-accelerate: closing the state store failed: %s", exc)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client backends={sorted(self._backends)} max_concurrency={self.config.max_concurrency}>"


__all__ = ["Client", "Priority", "Request"]
