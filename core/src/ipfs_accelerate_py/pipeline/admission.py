"""Admission: validate a request, give it its deadline, apply backpressure, queue it.

Nothing here waits: when the queue is full :meth:`Admission.offer` says so and the
driver decides whether (and how) to wait for space.
"""

from __future__ import annotations

from typing import Any, Mapping



from ..errors import CircuitOpenError, ClientClosedError, ConfigError, QueueFullError
from ..events import RequestQueued
from ..futures import RequestFuture
from ..queue import QueueEntry
from ..request import Request
from .dispatch import BatchWindow
from .jobs import Job
from .scheduling import Scheduling


class Admission:
    def __init__(self, s: Scheduling, batch_window: BatchWindow) -> None:
        self.s = s
        self.batch_window = batch_window

    def admit(self, req: Request) -> Job:
        """A job for ``req``, validated, with its future and queue entry; not queued yet."""
        s = self.s
        bstate = s.backends.get(req.backend or "")
        if bstate is None:
            raise ConfigError("backend", f"backend {req.backend!r} is not configured; configured: "
                              f"{', '.join(sorted(s.backends))}")
        bstate.backend.check(req)
        if req.key is not None and req.key not in bstate.key_names:
            raise ConfigError("key", f"backend {req.backend!r} has no key named {req.key!r}")
        now = s.clock()
        limit = req.deadline if req.deadline is not None else s.config.default_deadline
        deadline = now + limit if limit is not None else None
        fut = RequestFuture(req.request_id)
        job = Job(req, bstate, fut, now, deadline)
        job.entry = QueueEntry(int(req.priority), next(s.seq), bstate.group, job,
                               deadline=deadline, batch_key=bstate.backend.batch_key(req))
        fut._job = job  # for cancellation
        return job

    def check_open(self, job: Job) -> None:
        """Raise if the client takes no more requests, or (``fail_fast``) the backend's
        breaker is open.  Under the lock."""
        s = self.s
        if s.closing:
            raise ClientClosedError("the client is closed")
        bs = job.bstate
        if s.config.fail_fast and not bs.breaker.can_dispatch(s.clock()):
            raise CircuitOpenError(bs.group, request_id=job.request.request_id)

    def offer(self, job: Job, wake: bool) -> int | None:
        """Queue ``job`` if there is room; its queue depth then, or ``None`` when the queue
        is full.  Under the lock; raises as :meth:`check_open`."""
        s = self.s
        self.check_open(job)
        if s.queue.full():
            return None
        now = s.clock()
        entry = job.entry
        if entry.batch_key is not None:
            entry.not_before = self.batch_window.hold_until(job, now)
        s.queue.push(entry, now)
        depth = len(s.queue)
        if wake:
            s.wake_work()
        # Wake the reaper only for a request due before it looks again anyway: a wake-up
        # per request (every request has a deadline by default) was a thread switch each.
        due = job.deadline if job.deadline is not None else float("inf")
        if entry.not_before > now:
            due = min(due, entry.not_before)
        if due < s.reaper_due:
            s.wake_reaper()
        return depth

    def queue_full(self, timeout: float | None) -> QueueFullError:
        s = self.s
        if timeout is None:
            return QueueFullError(f"request queue is full ({len(s.queue)} requests; "
                                  f"queue_size={s.config.queue_size})")
        return QueueFullError(f"request queue still full after {timeout} s")

    def queued(self, job: Job, depth: int) -> None:
        """Tell the monitors (outside the lock)."""
        s = self.s
        if s.monitor.wants("accelerate_on_queued"):
            req = job.request
            s.monitor.emit("accelerate_on_queued", RequestQueued(
                req.request_id, job.bstate.name, req.operation, int(req.priority), depth,
                job.submitted, model=_model_of(req.payload), payload=req.payload,
                tags=req.tags))


def _model_of(payload: Mapping[str, Any]) -> str | None:
    model = payload.get("model") if isinstance(payload, Mapping) else None
    return model if isinstance(model, str) else None


__all__ = ["Admission"]
