"""Settlement: give back what dispatch reserved, book the outcome, end or requeue jobs.

:meth:`Settlement._record` is the one place an attempt's outcome reaches the breaker and
the limiter, :meth:`Settlement._release` the one place a key slot is freed; every
attempt passes through each exactly once.  Then each job is finished (result or error),
requeued to wait out a backoff, rerouted to another key, or left waiting for the
breaker, and the monitors are told.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    BREAKER_FAILURES,
    ClientClosedError,
    DeadlineExceeded,
    ErrorClass,
    PluginError,
    ProviderError,
    RequestCancelled,
)
from ..events import BreakerChanged, Outcome, RequestFinished, RequestRetried
from ..results import ResultStream, Usage
from ..retry import capped_retry_after
from .attempt import AttemptOutcome, Kind
from .jobs import Dispatch, Job, error_for, stamp
from .scheduling import Scheduling

log = logging.getLogger("ipfs_accelerate")

SUCCESS, FAILURE, NEUTRAL = "success", "failure", "neutral"


class Settlement:
    def __init__(self, s: Scheduling) -> None:
        self.s = s
        self.cache: Any = None  # the response cache stage (caching.CacheStage), if any

    # ------------------------------------------------------------ the two primitives
    def _record(self, d: Dispatch, now: float, verdict: str | None, hint: Any = None,
                err: ProviderError | None = None) -> None:
        """Book the attempt with the limiter and the breaker.  Under the lock."""
        key, breaker = d.key, d.bstate.breaker
        if hint is not None:  # remaining was counted when the request was sent (issue 12)
            key.limiter.observe(hint, now, sent_at=d.acquired_at)
        if verdict == SUCCESS:
            breaker.record_success(now, d.epoch)
            key.limiter.observe_success(now)
        elif verdict == FAILURE:
            breaker.record_failure(now, d.epoch)
        elif verdict == NEUTRAL:
            breaker.record_neutral(now, d.epoch)
        if err is not None and err.error_class is ErrorClass.RATE_LIMITED:
            # The key's cooldown obeys max_retry_after too: "retry-after: 999999" must not
            # park a key for days.
            key.limiter.observe_429(capped_retry_after(self.s.config.retry, err.retry_after),
                                    now)

    def _release(self, d: Dispatch, now: float, usage: Usage | None = None,
                 unsent: bool = False) -> None:
        """Free the key slot and the client's concurrency slot; settle the limiter's
        token estimate.  Under the lock; exactly once per dispatch."""
        if d.settled:
            raise RuntimeError("ipfs-accelerate: a dispatch was settled twice")
        d.settled = True
        s, key = self.s, d.key
        key.in_flight -= 1
        s.in_flight -= 1
        if unsent:
            key.limiter.release_unsent(d.tokens, now, acquired_at=d.acquired_at)
        elif usage is not None and d.bstate.needs_tokens:
            key.limiter.reconcile(d.tokens, usage.total_tokens, now, acquired_at=d.acquired_at)
        if len(s.queue):
            s.wake_work()  # a slot freed up for queued work

    # ------------------------------------------------------------ attempts
    def return_if_breaker_open(self, d: Dispatch) -> bool:
        """The breaker opened between picking these requests and sending them (another
        attempt's failure tripped it): put them back unsent, spending no attempt, so an
        outage gets probes only, not the stragglers of the moment it began."""
        s = self.s
        with s.lock:
            now = s.clock()
            if s.stopped or d.bstate.breaker.state(now) != "open":
                return False
            self._release(d, now, unsent=True)
            for j in d.jobs:
                j.entry.not_before = now
                s.queue.requeue(j.entry, now)
            s.wake_work()
        return True

    def settle(self, d: Dispatch, outcome: AttemptOutcome) -> None:
        kind = outcome.kind
        if kind is Kind.SUCCESS:
            self._succeeded(d, outcome)
        elif kind is Kind.STREAM:
            self._stream_opened(d, outcome)
        elif kind is Kind.PROVIDER_ERROR:
            self._failed(d, outcome.error, outcome.hint)  # type: ignore[arg-type]
        else:
            s = self.s
            with s.lock:
                now = s.clock()
                self._record(d, now, NEUTRAL)
                self._release(d, now)
            for j in d.jobs:
                self.fail(j, outcome.error)  # type: ignore[arg-type]

    def _succeeded(self, d: Dispatch, outcome: AttemptOutcome) -> None:
        s = self.s
        usage = outcome.usage
        with s.lock:
            now = s.clock()
            self._record(d, now, SUCCESS, outcome.hint)
            self._release(d, now, usage)
        jobs, bs, key_id = d.jobs, d.bstate, d.key.key_id
        batch = len(jobs)
        for j, r in zip(jobs, outcome.results):  # type: ignore[arg-type]
            stamp(r, bs.name, key_id, j.attempts, j.request.request_id)
            s.costs.price_result(j, r)
            if j.future.done():
                s.costs.finished(j, r.usage, None, False)  # billed, though nobody takes it
                continue
            if j.cache is not None and self.cache is not None:
                self.cache.write(j, r)  # before resolving: the next identical request hits
            j.future.set_result(r)
            self.finished(j, Outcome.SUCCESS, r.usage if batch > 1 else usage, batch, result=r)

    def _stream_opened(self, d: Dispatch, outcome: AttemptOutcome) -> None:
        # The breaker learns of the success now; the key slot is freed when the stream
        # closes, with the usage it reported.
        s = self.s
        job = d.jobs[0]
        with s.lock:
            self._record(d, s.clock(), SUCCESS, outcome.hint)

        def closed(error: BaseException | None, usage: Usage | None) -> None:
            s.costs.price_stream(job, stream, usage)
            if error is None and job.cache is not None and self.cache is not None:
                self.cache.write_stream(job, stream)  # the whole answer, read to its end
            with s.lock:
                self._release(d, s.clock(), usage)
            self.finished(job, Outcome.SUCCESS if error is None else Outcome.ERROR, usage, 1,
                          error=error)

        assert outcome.chunks is not None  # a STREAM outcome always carries its chunks
        stream = ResultStream(outcome.first, outcome.chunks, request_id=job.request.request_id,
                              backend=d.bstate.name, key_id=d.key.key_id, attempts=job.attempts,
                              closer=outcome.close, on_close=closed)
        job.future.set_result(stream)

    def _failed(self, d: Dispatch, err: ProviderError, hint: Any) -> None:
        s = self.s
        jobs, key, bs = d.jobs, d.key, d.bstate
        err.key_id = key.key_id
        err.backend = err.backend or bs.name
        cls = err.error_class
        with s.lock:
            now = s.clock()
            self._record(d, now, FAILURE if cls in BREAKER_FAILURES else NEUTRAL, hint, err)
            self._release(d, now)
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
            outage = (cls in BREAKER_FAILURES and not s.config.fail_fast
                      and bs.breaker.state(now) != "closed")
            s.wake_all()
        for j in jobs:
            s.costs.release(j)  # a refused or failed call is not billed
            jerr = error_for(err, j, shared=len(jobs) > 1)
            j.last_error = jerr
            self._after_failure(j, key.key_id, jerr, now, outage,
                                reroute=(rejected and other_keys and j.request.key is None))

    def _after_failure(self, job: Job, key_id: str, err: ProviderError, now: float,
                       outage: bool, reroute: bool) -> None:
        s = self.s
        bs = job.bstate
        if job.future.done():
            return
        if reroute:
            self._requeue(job, now, 0.0, err, key_id, "key rejected; trying another key")
            return
        if s.config.fail_fast and bs.breaker.state(now) == "open":
            # Fail fast, with this request's own classified error (the provider's message);
            # requests that never got through see CircuitOpenError at admission.
            self.finish_error(job, err, Outcome.ERROR)
            return
        # One decision for every failure, outage or not: an attempt the breaker let
        # through counts against max_attempts, and a failure that says "do not retry"
        # (x-should-retry: false, a short answer) ends here -- a request that fails the
        # same way every time ends with its own classified error, never at its deadline.
        try:
            decision = s.hooks.accelerate_backoff(
                request=job.request, attempt=job.attempts, error=err,
                policy=s.config.retry, now=now, deadline=job.deadline, rng=s.rng)
        except Exception as exc:
            self.finish_error(job, PluginError(s.plugin_name("accelerate_backoff"), "backoff",
                                               exc), Outcome.PLUGIN_ERROR)
            return
        if decision is None or not decision.retry:
            self.finish_error(job, err, Outcome.ERROR)
            return
        if outage:
            # The endpoint is down: wait in the queue for the breaker (waiting is no
            # attempt) without spending retry budget; the deadline still bounds the wait.
            # Back of its priority level: the breaker's next probe is another waiting
            # request, so an outage spreads its probes over the queue.
            job.outage_attempts += 1
            job.entry.seq = next(s.seq)
            self._requeue(job, now, 0.0, err, key_id, "waiting for the circuit breaker")
            return
        delay = decision.delay
        if not bs.budget.try_spend(now):
            # Over the retry budget: the retry is throttled, not dropped.
            delay = max(delay, s.config.retry.budget_window / 10)
            if job.deadline is not None and now + delay >= job.deadline:
                self.finish_error(job, err, Outcome.ERROR)
                return
        self._requeue(job, now, delay, err, key_id, decision.reason)

    def _requeue(self, job: Job, now: float, delay: float, err: ProviderError,
                 key_id: str, reason: str) -> None:
        s = self.s
        entry = job.entry
        entry.not_before = now + delay
        # Told before the job is back in the queue: another thread may pick it at once, and
        # its next attempt's "started" must not overtake this attempt's "retried".
        s.stats.retried(job.bstate.name, key_id, err.error_class is ErrorClass.RATE_LIMITED)
        if s.monitor.wants("accelerate_on_retried"):
            s.monitor.emit("accelerate_on_retried", RequestRetried(
                job.request.request_id, job.bstate.name, key_id, job.attempts,
                err.error_class.value, err.status, delay, now, tags=job.request.tags))
        with s.lock:
            stopped = s.stopped
            if not stopped:
                s.queue.requeue(entry, now)
                s.wake_work()
                if delay > 0:
                    s.wake_reaper()
        if stopped:
            self.finish_error(job, ClientClosedError("the client was closed"), Outcome.CANCELLED)

    def budget_refused(self, d: Dispatch, refused: list[tuple[Job, Any]]) -> None:
        """Some of a dispatch's jobs do not fit their budgets (costs.CostTracker.reserve):
        send none; fail those (``on_exceed="fail"``) or hold them in the queue, and put
        the others back as they were."""
        s = self.s
        why = {id(j): r for j, r in refused}
        for j in d.jobs:
            s.costs.release(j)
        later: list[tuple[Job, Any]] = []
        with s.lock:
            now = s.clock()
            if d.bstate.breaker.state(now) != "closed":
                self._record(d, now, NEUTRAL)  # frees a half-open trial slot; counts nothing
            self._release(d, now, unsent=True)
            for j in d.jobs:
                r = why.get(id(j))
                if r is not None:
                    j.last_error = r.error
                if r is None or r.delay is not None:
                    if s.stopped:
                        later.append((j, None))
                        continue
                    j.entry.not_before = now + (r.delay if r is not None else 0.0)
                    s.queue.requeue(j.entry, now)
                else:
                    later.append((j, r.error))
            s.wake_work()
            s.wake_reaper()
        for j, error in later:
            if error is None:
                self.finish_error(j, ClientClosedError("the client was closed"), Outcome.CANCELLED)
            else:
                self.finish_error(j, error, Outcome.ERROR)

    # ------------------------------------------------------------ ending jobs
    def fail(self, job: Job, exc: BaseException) -> None:
        self.finish_error(job, exc, Outcome.PLUGIN_ERROR if isinstance(exc, PluginError)
                          else Outcome.CANCELLED if isinstance(exc, RequestCancelled)
                          else Outcome.ERROR)

    def expired(self, job: Job) -> None:
        self.finish_error(job, DeadlineExceeded(
            f"deadline passed after {job.attempts} attempt(s) while waiting in the queue",
            request_id=job.request.request_id, last_error=job.last_error), Outcome.DEADLINE)

    def finish_error(self, job: Job, exc: BaseException, outcome: Outcome) -> None:
        if job.future.done():
            return
        try:
            job.future.set_exception(exc)
        except Exception:  # cancelled meanwhile
            return
        if isinstance(exc, ProviderError) and exc.error_class is ErrorClass.RATE_LIMITED:
            self.s.stats.rate_limited(job.bstate.name, job.key_id)
        self.finished(job, outcome, None, 1, error=exc)

    def finished(self, job: Job, outcome: Outcome, usage: Usage | None, batch_size: int,
                 error: BaseException | None = None, result: Any = None) -> None:
        s = self.s
        now = s.clock()
        latency = now - job.submitted
        s.stats.finished(job.bstate.name, job.key_id, outcome, latency, job.attempts, usage)
        s.costs.finished(job, usage, error, outcome is Outcome.SUCCESS)
        if s.space_waiting or s.closing:
            # Only take the lock when someone waits for queue space or for close() to drain.
            with s.lock:
                s.wake_space()
                s.wake_all()
        if s.monitor.wants("accelerate_on_finished"):
            s.monitor.emit("accelerate_on_finished", RequestFinished(
                job.request.request_id, job.bstate.name, job.request.operation, outcome, latency,
                job.key_id, job.attempts,
                error_class=error.error_class.value if isinstance(error, ProviderError) else (
                    type(error).__name__ if error is not None else None),
                error=str(error) if error is not None else None, usage=usage,
                batch_size=batch_size, time=now,
                model=getattr(result, "model", None),
                response_id=getattr(result, "provider_request_id", None), result=result,
                tags=job.request.tags, cost=s.costs.cost_of(job)))

    def unsent(self, d: Dispatch, exc: BaseException) -> None:
        """A dispatch its driver dropped before sending it (the asyncio driver's task was
        cancelled before its attempt began): give back everything it reserved, the
        limiter's admission included, and end its jobs as cancelled."""
        s = self.s
        with s.lock:
            now = s.clock()
            if d.bstate.breaker.state(now) == "half_open":  # free its trial slot
                d.bstate.breaker.record_neutral(now, d.epoch)
            self._release(d, now, unsent=True)
        for j in d.jobs:
            self.finish_error(j, exc, Outcome.CANCELLED)

    def cancelled(self, job: Job) -> None:
        """A caller cancelled a queued request: take it out now, not when it surfaces."""
        s = self.s
        with s.lock:
            if s.queue.remove(job.entry):
                s.wake_space()
        self.finished(job, Outcome.CANCELLED, None, 1)

    def breaker_changed(self, endpoint: str, old: str, new: str, now: float) -> None:
        log.info("ipfs-accelerate: breaker %s %s -> %s", endpoint, old, new)
        monitor = self.s.monitor
        if monitor.wants("accelerate_on_breaker_changed"):
            monitor.emit("accelerate_on_breaker_changed", BreakerChanged(endpoint, old, new, now))
