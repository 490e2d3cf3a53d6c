"""What the stages pass along: a submitted request's progress (``Job``), one backend's
live scheduling state (``BackendState``), and one reserved attempt (``Dispatch``)."""

from __future__ import annotations

import copy
from concurrent.futures import Future
from typing import Any

from ..backend import Backend
from ..errors import ProviderError
from ..request import Request
from ..results import Result
from ..selection import KeyCandidate


class Job:
    """One submitted request and its progress through the pipeline."""

    __slots__ = ("request", "bstate", "future", "submitted", "deadline", "attempts",
                 "outage_attempts", "tokens", "last_error", "entry", "running", "key_id",
                 "acquired_at", "reservation", "cost_units", "cost_model", "cache")

    def __init__(self, request: Request, bstate: BackendState, future: Future,
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
        self.reservation: Any = None  # budget reservations of the attempt in flight (costs)
        self.cost_units: int | None = None  # the result's cost in pico-dollars (costs)
        self.cost_model: str | None = None
        self.cache: Any = None  # the cache stage's pending write (caching.stage.Pending)


class BackendState:
    """A configured backend with its keys, strategy, breaker and retry budget."""

    __slots__ = ("name", "backend", "config", "keys", "strategy", "strategy_name", "group",
                 "breaker", "budget", "key_names", "needs_tokens")

    def __init__(self, backend: Backend, keys: list[KeyCandidate], strategy: Any, breaker: Any,
                 budget: Any, needs_tokens: bool, strategy_name: str = "?") -> None:
        self.name = backend.name
        self.backend = backend
        self.config = backend.config
        self.keys = keys
        self.strategy = strategy
        self.strategy_name = strategy_name
        self.group = backend.endpoint_id()
        self.breaker = breaker
        self.budget = budget
        self.key_names = {k.key_id for k in keys}
        self.needs_tokens = needs_tokens


class Dispatch:
    """Capacity reserved by the dispatch stage for one attempt: a key slot, the client's
    concurrency slot, the limiter's admission and the breaker's epoch.  The settlement
    stage gives every part of it back exactly once."""

    __slots__ = ("jobs", "key", "bstate", "epoch", "settled")

    def __init__(self, jobs: list[Job], key: KeyCandidate, bstate: BackendState,
                 epoch: int) -> None:
        self.jobs = jobs
        self.key = key
        self.bstate = bstate
        self.epoch = epoch
        self.settled = False

    @property
    def tokens(self) -> int:
        return sum(j.tokens or 0 for j in self.jobs)

    @property
    def acquired_at(self) -> float | None:
        return self.jobs[0].acquired_at


def stamp(result: Result, backend: str, key_id: str, attempts: int, request_id: str) -> None:
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


def error_for(err: ProviderError, job: Job, shared: bool) -> ProviderError:
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
