"""Tests of the circuit breaker: every documented rule, and a stateful model test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ipfs_accelerate_py.breaker import HALF_OPEN_POLL, CircuitBreaker
from ipfs_accelerate_py.config import BreakerPolicy

CLOSED, OPEN, HALF = CircuitBreaker.CLOSED, CircuitBreaker.OPEN, CircuitBreaker.HALF_OPEN
EDGES = {(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN), (HALF, CLOSED)}


def make(**kw):
    log: list[tuple] = []
    policy = BreakerPolicy(**kw)
    b = CircuitBreaker("ep", policy, on_transition=lambda *a: log.append(a))
    return b, log


def call(b, now, outcome):
    epoch = b.on_dispatch(now)
    getattr(b, "record_" + outcome)(now, epoch)


# --- unit tests ---------------------------------------------------------------------


def test_starts_closed():
    b, log = make()
    assert b.state(0) == CLOSED and b.can_dispatch(0) and b.time_until_dispatch(0) == 0.0
    assert b.trips == 0 and log == []
    assert b.snapshot(0) == {"state": CLOSED, "failure_rate": 0.0, "calls_in_window": 0,
                             "open_for": 0.0, "trips": 0}


def test_needs_minimum_calls():
    b, log = make(minimum_calls=5, failure_rate_threshold=0.5)
    for _ in range(4):
        call(b, 0, "failure")
    assert b.state(0) == CLOSED
    call(b, 0, "failure")
    assert b.state(0) == OPEN
    assert log == [("ep", CLOSED, OPEN, 0)]


def test_trips_when_minimum_reached_by_a_success():
    b, _ = make(minimum_calls=5, failure_rate_threshold=0.5)
    for o in ["failure", "failure", "failure", "success"]:
        call(b, 0, o)
    assert b.state(0) == CLOSED
    call(b, 0, "success")  # 3/5 >= 0.5
    assert b.state(0) == OPEN


def test_below_threshold_stays_closed_and_window_slides():
    b, _ = make(window_size=4, minimum_calls=4, failure_rate_threshold=0.75)
    for o in ["failure", "failure", "success", "success", "success", "failure", "failure"]:
        call(b, 0, o)
        assert b.state(0) == CLOSED
    snap = b.snapshot(0)
    assert snap["calls_in_window"] == 4 and snap["failure_rate"] == 0.5
    call(b, 0, "failure")  # window: S F F F
    assert b.state(0) == OPEN


def test_neutral_never_trips_and_counts_as_non_failure():
    b, _ = make(minimum_calls=2, failure_rate_threshold=0.5, window_size=10)
    for _ in range(50):
        call(b, 0, "neutral")
    assert b.state(0) == CLOSED
    call(b, 0, "failure")  # window: 9 neutral + 1 failure
    assert b.state(0) == CLOSED
    assert b.snapshot(0)["failure_rate"] == pytest.approx(0.1)


def test_threshold_zero_means_any_failure_not_none():
    b, _ = make(minimum_calls=1, failure_rate_threshold=0.0)
    call(b, 0, "success")
    assert b.state(0) == CLOSED
    call(b, 0, "failure")
    assert b.state(0) == OPEN


def test_threshold_one_needs_all_failures():
    b, _ = make(window_size=3, minimum_calls=3, failure_rate_threshold=1.0)
    for o in ["failure", "failure", "success", "failure", "failure"]:
        call(b, 0, o)
        assert b.state(0) == CLOSED
    call(b, 0, "failure")
    assert b.state(0) == OPEN


def trip(b, now):
    while b.state(now) == CLOSED:
        call(b, now, "failure")


def test_open_refuses_then_half_opens_lazily():
    b, log = make(minimum_calls=1, open_interval=2.0)
    trip(b, 10.0)
    assert not b.can_dispatch(10.0)
    assert b.time_until_dispatch(11.5) == pytest.approx(0.5)
    assert b.snapshot(11.5)["open_for"] == pytest.approx(0.5)
    assert b.state(11.99) == OPEN
    assert b.state(12.0) == HALF
    assert log[-1] == ("ep", OPEN, HALF, 12.0)
    assert b.can_dispatch(12.0)


def test_can_dispatch_does_the_lazy_move_too():
    b, log = make(minimum_calls=1, open_interval=1.0)
    trip(b, 0.0)
    assert b.can_dispatch(1.0)
    assert log[-1][1:3] == (OPEN, HALF)


def test_half_open_trial_budget_and_close():
    b, log = make(minimum_calls=1, open_interval=1.0, half_open_trials=2, window_size=5)
    trip(b, 0.0)
    assert b.state(1.0) == HALF
    e1 = b.on_dispatch(1.0)
    assert b.can_dispatch(1.0)
    e2 = b.on_dispatch(1.0)
    assert not b.can_dispatch(1.0)
    assert b.time_until_dispatch(1.0) == HALF_OPEN_POLL
    b.record_success(1.1, e1)
    assert b.state(1.1) == HALF and b.can_dispatch(1.1)
    b.record_success(1.2, e2)
    assert b.state(1.2) == CLOSED
    assert log[-1] == ("ep", HALF, CLOSED, 1.2)
    assert b.trips == 0
    assert b.snapshot(1.2)["calls_in_window"] == 0  # window cleared on close


def test_half_open_neutral_frees_slot_without_closing():
    b, _ = make(minimum_calls=1, open_interval=1.0, half_open_trials=1)
    trip(b, 0.0)
    e = b.on_dispatch(1.0)
    assert not b.can_dispatch(1.0)
    b.record_neutral(1.0, e)
    assert b.state(1.0) == HALF and b.can_dispatch(1.0)
    call(b, 1.0, "success")
    assert b.state(1.0) == CLOSED


def test_half_open_failure_reopens_with_growing_interval_capped():
    b, log = make(minimum_calls=1, open_interval=1.0, interval_multiplier=3.0,
                  max_open_interval=20.0)
    trip(b, 0.0)
    now = 0.0
    intervals = []
    for _ in range(5):
        intervals.append(b.current_open_interval)
        now += b.time_until_dispatch(now)
        assert b.state(now) == HALF
        call(b, now, "failure")
        assert b.state(now) == OPEN
    assert intervals == [1.0, 3.0, 9.0, 20.0, 20.0]
    assert b.trips == 6
    # a success run closes it and resets the growth
    now += b.time_until_dispatch(now)
    call(b, now, "success")
    assert b.state(now) == CLOSED and b.trips == 0
    assert b.current_open_interval == 1.0
    trip(b, now)
    assert b.time_until_dispatch(now) == pytest.approx(1.0)
    assert all((old, new) in EDGES for _, old, new, _ in log)


def test_stale_outcomes_while_open_are_ignored():
    b, _ = make(minimum_calls=2, open_interval=5.0)
    early = [b.on_dispatch(0.0) for _ in range(3)]
    call(b, 0.0, "failure")
    call(b, 0.0, "failure")
    assert b.state(0.0) == OPEN
    # late results of calls sent before the trip, with and without epoch
    b.record_success(1.0, early[0])
    b.record_failure(1.0)
    b.record_success(1.0)
    assert b.state(1.0) == OPEN and b.trips == 1
    assert b.snapshot(1.0)["calls_in_window"] == 2


def test_stale_outcome_with_epoch_in_half_open_is_ignored():
    b, _ = make(minimum_calls=1, open_interval=1.0, half_open_trials=1)
    old = b.on_dispatch(0.0)  # sent while CLOSED, answers very late
    trip(b, 0.0)
    trial = b.on_dispatch(1.0)
    b.record_failure(1.5, old)  # stale: must not re-open
    assert b.state(1.5) == HALF and not b.can_dispatch(1.5)  # and must not free the slot
    b.record_success(1.6, trial)
    assert b.state(1.6) == CLOSED
    b.record_failure(1.7, old)  # stale in CLOSED too: not counted
    assert b.snapshot(1.7)["calls_in_window"] == 0


def test_without_epoch_half_open_ignores_outcomes_when_no_trial_in_flight():
    b, _ = make(minimum_calls=1, open_interval=1.0)
    trip(b, 0.0)
    assert b.state(1.0) == HALF
    b.record_failure(1.0)  # nobody holds a trial slot: stale
    assert b.state(1.0) == HALF
    b.on_dispatch(1.0)
    b.record_success(1.1)
    assert b.state(1.1) == CLOSED


def test_epoch_changes_on_every_transition():
    b, _ = make(minimum_calls=1, open_interval=1.0)
    epochs = [b.epoch]
    trip(b, 0.0)
    epochs.append(b.epoch)
    b.state(1.0)
    epochs.append(b.epoch)
    call(b, 1.0, "success")
    epochs.append(b.epoch)
    assert len(set(epochs)) == 4


def test_on_dispatch_returns_current_epoch_and_no_callback_needed():
    b = CircuitBreaker("x", BreakerPolicy(minimum_calls=1))
    assert b.on_dispatch(0.0) == b.epoch
    b.record_failure(0.0)
    assert b.state(0.0) == OPEN
    assert "x" in repr(b)


# --- stateful model test ------------------------------------------------------------


class Model:
    """The documented semantics, written as plainly as possible."""

    def __init__(self, p: BreakerPolicy):
        self.p = p
        self.state = CLOSED
        self.window: list[bool] = []
        self.trips = 0
        self.until = 0.0
        self.trials = 0
        self.oks = 0
        self.epoch = 0

    def go(self, new, now):
        self.state = new
        self.epoch += 1
        self.trials = self.oks = 0
        if new == OPEN:
            self.trips += 1
            p = self.p
            self.interval = min(p.max_open_interval,
                                p.open_interval * p.interval_multiplier ** (self.trips - 1))
            self.until = now + self.interval
        if new == CLOSED:
            self.trips = 0
            self.window = []

    def tick(self, now):
        if self.state == OPEN and now >= self.until:
            self.go(HALF, now)

    def can(self, now):
        self.tick(now)
        return self.state == CLOSED or (self.state == HALF and self.trials < self.p.half_open_trials)

    def dispatch(self, now):
        self.tick(now)
        if self.state == HALF:
            self.trials += 1
        return self.epoch

    def record(self, outcome, now, epoch):
        self.tick(now)
        if epoch is not None:
            if epoch != self.epoch or self.state == OPEN:
                return
            if self.state == HALF:
                self.trials = max(0, self.trials - 1)
        elif self.state == OPEN:
            return
        elif self.state == HALF:
            if self.trials == 0:
                return
            self.trials -= 1
        if self.state == CLOSED:
            self.window = (self.window + [outcome == "failure"])[-self.p.window_size:]
            n, f = len(self.window), sum(self.window)
            if n >= self.p.minimum_calls and f > 0 and f / n >= self.p.failure_rate_threshold:
                self.go(OPEN, now)
        elif outcome == "failure":
            self.go(OPEN, now)
        elif outcome == "success":
            self.oks += 1
            if self.oks >= self.p.half_open_trials:
                self.go(CLOSED, now)


class BreakerMachine(RuleBasedStateMachine):
    @initialize(window=st.integers(1, 8), minimum=st.integers(1, 8),
                threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
                interval=st.floats(0.1, 5), mult=st.floats(1, 3), cap=st.floats(0.1, 20),
                trials=st.integers(1, 3))
    def setup(self, window, minimum, threshold, interval, mult, cap, trials):
        self.policy = BreakerPolicy(window_size=window, minimum_calls=minimum,
                                    failure_rate_threshold=threshold, open_interval=interval,
                                    interval_multiplier=mult, max_open_interval=cap,
                                    half_open_trials=trials)
        self.log: list[tuple] = []
        self.b = CircuitBreaker("ep", self.policy, lambda *a: self.log.append(a))
        self.m = Model(self.policy)
        self.now = 0.0
        self.inflight: list[int] = []

    @rule(dt=st.one_of(st.just(0.0), st.floats(0, 3)))
    def advance(self, dt):
        self.now += dt

    @rule()
    def wait_until_dispatchable(self):
        w = self.b.time_until_dispatch(self.now)
        assert w >= 0
        self.now += w
        if w != HALF_OPEN_POLL:
            assert self.b.can_dispatch(self.now)

    @rule()
    def dispatch(self):
        can = self.b.can_dispatch(self.now)
        assert can == self.m.can(self.now)
        if can:
            e = self.b.on_dispatch(self.now)
            assert e == self.m.dispatch(self.now)
            self.inflight.append(e)

    @rule(data=st.data(), outcome=st.sampled_from(["success", "failure", "neutral"]),
          with_epoch=st.booleans())
    def complete(self, data, outcome, with_epoch):
        if not self.inflight:
            return
        i = data.draw(st.integers(0, len(self.inflight) - 1))
        epoch = self.inflight.pop(i)
        passed = epoch if with_epoch else None
        getattr(self.b, "record_" + outcome)(self.now, passed)
        self.m.record(outcome, self.now, passed)

    @invariant()
    def matches_model(self):
        if not hasattr(self, "b"):
            return
        st_ = self.b.state(self.now)
        self.m.tick(self.now)
        assert st_ == self.m.state
        assert self.b.trips == self.m.trips
        assert self.b.epoch == self.m.epoch
        snap = self.b.snapshot(self.now)
        assert snap["state"] == st_
        assert snap["calls_in_window"] == len(self.m.window)
        if self.m.window:
            assert snap["failure_rate"] == pytest.approx(sum(self.m.window) / len(self.m.window))
        if st_ == OPEN:
            assert not self.b.can_dispatch(self.now)
            assert self.b.time_until_dispatch(self.now) == pytest.approx(self.m.until - self.now)
            assert 0 < self.b.current_open_interval <= self.policy.max_open_interval
            assert snap["open_for"] > 0

    @invariant()
    def transitions_form_a_valid_chain(self):
        if not hasattr(self, "b"):
            return
        prev = CLOSED
        last_t = 0.0
        for ep, old, new, t in self.log:
            assert ep == "ep" and old == prev and (old, new) in EDGES
            assert t >= last_t
            prev, last_t = new, t
        assert prev == self.b._state


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=120, stateful_step_count=50, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
