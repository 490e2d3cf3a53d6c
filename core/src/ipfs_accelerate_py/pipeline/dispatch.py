"""Dispatch: which queued request runs next, on which key, with which batchmates.

:meth:`Dispatcher.pick` is the one place that reserves capacity (the key slot, the
client's concurrency slot, the limiter's admission, the breaker's epoch) and returns it
as a :class:`~.jobs.Dispatch`; the settlement stage gives it back.  Everything runs under
the scheduling lock and never waits.
"""

from __future__ import annotations

from typing import Any

from ..errors import AuthError, PluginError
from ..selection import KeyCandidate
from .jobs import BackendState, Dispatch, Job
from .scheduling import Scheduling

MAX_WAIT = 0.5  # upper bound of an idle driver's wait: a safety net against lost wakeups


class BatchWindow:
    """The batching policy: a batchable request waits in the queue (not on a worker) up
    to ``batch_window`` seconds for batchmates.  Requests with the same batch key arriving
    within one window become due together, so dispatch takes them as one call; a window
    holds at most one full batch, so a full batch never waits for the next one."""

    def __init__(self) -> None:
        self._gates: dict[tuple[str, Any], list[Any]] = {}  # (group, batch_key) -> [until, count]

    def hold_until(self, job: Job, now: float) -> float:
        window = job.bstate.config.batch_window
        if window <= 0:
            return 0.0
        key = (job.bstate.group, job.entry.batch_key)
        gate = self._gates.get(key)
        limit = job.bstate.backend.max_batch_size(job.request)
        if gate is not None and now < gate[0] and gate[1] < limit:
            gate[1] += 1
            return gate[0]
        if len(self._gates) > 1024:  # forget windows long closed
            self._gates = {k: g for k, g in self._gates.items() if g[0] > now}
        self._gates[key] = [now + window, 1]
        return now + window


class Dispatcher:
    def __init__(self, s: Scheduling) -> None:
        self.s = s

    def group_ready(self, group: str, now: float) -> bool:
        bs = self.s.groups[group]
        if not bs.breaker.can_dispatch(now):
            return False
        for k in bs.keys:
            if k.healthy and k.in_flight < k.max_concurrent and k.limiter.wait_time(0, now) <= 0:
                return True
        return not any(k.healthy for k in bs.keys)  # let it surface to fail with the auth error

    def pick(self, now: float, failed: list[tuple[Job, BaseException]]) -> Dispatch | None:
        """Reserve capacity for the best runnable request (and its batchmates), or None.
        Requests that can never run (every key rejected, a strategy that raised) are
        appended to ``failed`` for the caller to settle outside the lock."""
        s = self.s
        if s.in_flight >= s.config.max_concurrency:
            return None  # workers plus helping callers never exceed the client's limit
        queue = s.queue
        skipped = []
        chosen = None
        ready_cache: dict[str, bool] = {}

        def ready(group: str) -> bool:
            r = ready_cache.get(group)
            if r is None:
                r = ready_cache[group] = self.group_ready(group, now)
            return r

        for _ in range(64):
            entry = queue.pop(now, ready)
            if entry is None:
                break
            job: Job = entry.payload
            if job.future.done():
                continue
            key, error = self.choose_key(job, now)
            if error is not None:
                failed.append((job, error))
                break
            if key is None:
                skipped.append(entry)
                continue
            chosen = (entry, key)
            break
        for e in skipped:
            queue.requeue(e, now)
        if chosen is None:
            return None
        entry, key = chosen
        entries = [entry]
        bs: BackendState = entry.payload.bstate
        if entry.batch_key is not None:
            limit = bs.backend.max_batch_size(entry.payload.request) - 1
            if limit > 0:
                entries.extend(e for e in queue.pop_batch(entry, limit, now)
                               if not e.payload.future.done())
        live: list[Job] = []
        for e in entries:
            job = e.payload
            if not job.running:
                if not job.future.set_running_or_notify_cancel():
                    continue
                job.running = True
                bs.budget.record_request(now)
            live.append(job)
        if not live:
            key.limiter.release_unsent(entry.payload.tokens or 0, now, acquired_at=now)
            return None
        key.in_flight += 1
        key.dispatched += 1
        s.in_flight += 1
        return Dispatch(live, key, bs, bs.breaker.on_dispatch(now))

    def choose_key(self, job: Job, now: float) -> tuple[KeyCandidate | None, BaseException | None]:
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
            chosen = bs.strategy.select(job.request, cands)
        except Exception as exc:
            return None, PluginError(bs.strategy_name, "strategy select", exc)
        if chosen is None:
            return None, None
        if chosen not in cands:
            return None, PluginError(bs.strategy_name, "strategy select",
                                     ValueError("returned a key that is not among the candidates"))
        if not chosen.limiter.acquire(tokens, now):
            return None, None
        job.acquired_at = now
        return chosen, None

    def wait_time(self, now: float) -> float | None:
        """How long a driver may wait before something queued could become runnable
        (None: the queue is empty, wait for a wake-up)."""
        s = self.s
        if not len(s.queue):
            return None
        wait = MAX_WAIT
        nxt = s.queue.next_wakeup(now)
        if nxt is not None:
            wait = min(wait, max(0.0, nxt - now))
        for group in s.queue.groups():
            bs = s.groups[group]
            t = bs.breaker.time_until_dispatch(now)
            if t > 0:
                wait = min(wait, t)
                continue
            for k in bs.keys:
                if k.healthy and k.in_flight < k.max_concurrent:
                    wait = min(wait, k.limiter.wait_time(0, now))
        return max(wait, 0.0005)

    def expire(self, now: float) -> list[Job]:
        """Take the queued jobs whose deadline passed (settle them outside the lock)."""
        expired = self.s.queue.expire(now)
        if expired:
            self.s.wake_space()
        return [e.payload for e in expired]
