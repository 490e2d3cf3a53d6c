"""A circuit breaker per backend endpoint.

When an endpoint is failing, sending it more requests only burns attempts and deadline.
The breaker watches the outcomes of recent calls and, when too many fail, stops dispatch
to that endpoint for a while (OPEN); then it lets a few trial calls through (HALF_OPEN)
and closes again once they succeed.  While it is open, the pipeline keeps the endpoint's
requests queued (up to their deadlines) instead of failing them.

Outcomes: ``record_failure`` for the classes in ``errors.BREAKER_FAILURES`` (transient,
timeout, connection); ``record_neutral`` for 429s and client errors -- they count as
non-failures in the window and, in HALF_OPEN, free their trial slot without closing;
``record_success`` otherwise.  Every dispatched call must be followed by exactly one
``record_*``.

Stale outcomes.  A call dispatched before a transition may report after it (a request
sent while CLOSED times out 120 s later, when the breaker is HALF_OPEN).  Such outcomes
must not decide the new state.  :meth:`CircuitBreaker.on_dispatch` returns an ``epoch``
(it changes on every transition); passing it back to ``record_*`` makes the rule exact:
an outcome counts only if its call was dispatched in the current epoch, otherwise it is
ignored (it still frees its trial slot).  Without an epoch the breaker falls back to:
while OPEN, ignore every outcome; in HALF_OPEN, attribute an outcome to a trial only
while trials are in flight (otherwise ignore it); in CLOSED, count it.

Not thread-safe: the pipeline calls it under its own lock.  ``now`` is passed in.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from .config import BreakerPolicy

__all__ = ["CircuitBreaker", "TransitionCallback"]

TransitionCallback = Callable[[str, str, str, float], None]

#: How soon to ask again when HALF_OPEN has all its trial slots busy.
HALF_OPEN_POLL = 0.05

_FAILURE, _OK = True, False


class CircuitBreaker:
    """CLOSED / OPEN / HALF_OPEN breaker following a :class:`BreakerPolicy`.

    Opens when the last ``window_size`` outcomes hold at least ``minimum_calls`` calls
    and ``failures / calls >= failure_rate_threshold``.  Stays open
    ``min(max_open_interval, open_interval * interval_multiplier ** (trips - 1))``
    seconds, ``trips`` counting consecutive trips (reset on close).  Then HALF_OPEN lets
    ``half_open_trials`` calls through at a time; that many successes close it (and clear
    the window), any failure re-opens it.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __init__(self, endpoint: str, policy: BreakerPolicy,
                 on_transition: TransitionCallback | None = None) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.on_transition = on_transition
        self._state = self.CLOSED
        self._window: deque[bool] = deque(maxlen=policy.window_size)
        self._failures = 0
        self._trips = 0
        self._opened_at = 0.0
        self._interval = policy.open_interval
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._epoch = 0

    # -- transitions ------------------------------------------------------------------

    def _move(self, new: str, now: float) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._trials_in_flight = 0
        self._trial_successes = 0
        if new == self.OPEN:
            self._trips += 1
            p = self.policy
            try:
                interval = p.open_interval * p.interval_multiplier ** (self._trips - 1)
            except OverflowError:
                interval = p.max_open_interval
            self._interval = min(p.max_open_interval, interval)
            self._opened_at = now
        elif new == self.CLOSED:
            self._trips = 0
            self._window.clear()
            self._failures = 0
        if self.on_transition is not None:
            self.on_transition(self.endpoint, old, new, now)

    def state(self, now: float) -> str:
        """The current state; an OPEN breaker whose interval has elapsed moves to
        HALF_OPEN here (firing the callback)."""
        if self._state == self.OPEN and now >= self._opened_at + self._interval:
            self._move(self.HALF_OPEN, now)
        return self._state

    # -- dispatch ---------------------------------------------------------------------

    def can_dispatch(self, now: float) -> bool:
        """May a call be sent now?  CLOSED yes, OPEN no, HALF_OPEN while a trial slot is
        free.  No side effect beyond the lazy OPEN -> HALF_OPEN move."""
        st = self.state(now)
        if st == self.CLOSED:
            return True
        if st == self.HALF_OPEN:
            return self._trials_in_flight < self.policy.half_open_trials
        return False

    def on_dispatch(self, now: float) -> int:
        """A call is being sent.  In HALF_OPEN it occupies a trial slot.  Returns the
        epoch to pass back to ``record_*`` (optional, makes stale outcomes exact)."""
        if self.state(now) == self.HALF_OPEN:
            self._trials_in_flight += 1
        return self._epoch

    def time_until_dispatch(self, now: float) -> float:
        """0.0 if a call may be sent now; while OPEN the rest of the open interval; in
        HALF_OPEN with every trial slot busy a short poll interval."""
        if self.can_dispatch(now):
            return 0.0
        if self._state == self.OPEN:
            return max(0.0, self._opened_at + self._interval - now)
        return HALF_OPEN_POLL

    # -- outcomes ---------------------------------------------------------------------

    def _current(self, st: str, epoch: int | None) -> bool:
        """Does this outcome belong to the current state (see the module docstring)?
        Frees its trial slot either way when it might hold one."""
        if epoch is not None:
            if epoch != self._epoch:
                return False
            if st == self.HALF_OPEN and self._trials_in_flight > 0:
                self._trials_in_flight -= 1
            return st != self.OPEN
        if st == self.CLOSED:
            return True
        if st == self.HALF_OPEN and self._trials_in_flight > 0:
            self._trials_in_flight -= 1
            return True
        return False

    def _add(self, failure: bool, now: float) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._failures -= 1
        window.append(failure)
        if failure:
            self._failures += 1
        p = self.policy
        calls = len(window)
        # ``failures > 0``: a threshold of 0 means "any failure", never "no failure".
        if (calls >= p.minimum_calls and self._failures > 0
                and self._failures / calls >= p.failure_rate_threshold):
            self._move(self.OPEN, now)

    def record_success(self, now: float, epoch: int | None = None) -> None:
        st = self.state(now)
        if not self._current(st, epoch):
            return
        if st == self.CLOSED:
            self._add(_OK, now)
        elif st == self.HALF_OPEN:
            self._trial_successes += 1
            if self._trial_successes >= self.policy.half_open_trials:
                self._move(self.CLOSED, now)

    def record_failure(self, now: float, epoch: int | None = None) -> None:
        st = self.state(now)
        if not self._current(st, epoch):
            return
        if st == self.CLOSED:
            self._add(_FAILURE, now)
        elif st == self.HALF_OPEN:
            self._move(self.OPEN, now)

    def record_neutral(self, now: float, epoch: int | None = None) -> None:
        """A 429 or client error: a non-failure in the window; in HALF_OPEN it frees the
        trial slot without counting toward closing."""
        st = self.state(now)
        if not self._current(st, epoch):
            return
        if st == self.CLOSED:
            self._add(_OK, now)

    # -- inspection -------------------------------------------------------------------

    @property
    def current_open_interval(self) -> float:
        """The open interval of the current (or most recent) trip; once closed, the
        interval the next trip would use (``policy.open_interval``)."""
        if self._state == self.CLOSED:
            return self.policy.open_interval
        return self._interval

    @property
    def trips(self) -> int:
        """Consecutive trips since the breaker last closed."""
        return self._trips

    @property
    def epoch(self) -> int:
        return self._epoch

    def snapshot(self, now: float) -> dict:
        st = self.state(now)
        calls = len(self._window)
        return {
            "state": st,
            "failure_rate": self._failures / calls if calls else 0.0,
            "calls_in_window": calls,
            "open_for": max(0.0, self._opened_at + self._interval - now) if st == self.OPEN else 0.0,
            "trips": self._trips,
        }

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.endpoint!r}, state={self._state!r}, trips={self._trips})"
