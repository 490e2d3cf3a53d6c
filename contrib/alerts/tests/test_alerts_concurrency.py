"""The debounce logic against a model (hypothesis stateful), and the manager under
threads: events from many threads, evaluation and delivery running meanwhile."""

from __future__ import annotations

import threading
import time

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ipfs_accelerate_py.events import (BreakerChanged, Outcome, RequestFinished, RequestQueued,
                                       RequestStarted)

from ipfs_accelerate_alerts import AlertManager, BreakerOpen, ErrorRate, QueueAge, notifier_hookimpl

SUBJECTS = ("a", "b", "c")


@attrs.define
class Switch:
    """A rule whose condition the test turns on and off per subject."""

    on: set[str] = attrs.field(factory=set)
    name: str = "switch"
    severity: str = "warning"

    def evaluate(self, view, now):
        return {s: ("on", None) for s in self.on}


class DebounceMachine(RuleBasedStateMachine):
    QUIET = 3.0

    def __init__(self) -> None:
        super().__init__()
        self.switch = Switch()
        self.manager = AlertManager([self.switch], [], quiet=self.QUIET)
        self.now = 1000.0
        self.emitted: dict[str, list[str]] = {s: [] for s in SUBJECTS}
        # The model: is an incident open, and since when has its condition been clear.
        self.active: dict[str, bool] = {s: False for s in SUBJECTS}
        self.clear_since: dict[str, float | None] = {s: None for s in SUBJECTS}

    @rule(subject=st.sampled_from(SUBJECTS), on=st.booleans())
    def set_condition(self, subject: str, on: bool) -> None:
        (self.switch.on.add if on else self.switch.on.discard)(subject)

    @rule(dt=st.floats(min_value=0.0, max_value=5.0))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def evaluate(self) -> None:
        got = {(a.subject, a.state) for a in self.manager.evaluate(self.now)}
        expected = set()
        for s in SUBJECTS:
            if s in self.switch.on:
                self.clear_since[s] = None
                if not self.active[s]:
                    self.active[s] = True
                    expected.add((s, "firing"))
            elif self.active[s]:
                if self.clear_since[s] is None:
                    self.clear_since[s] = self.now
                if self.now - self.clear_since[s] >= self.QUIET:
                    self.active[s] = False
                    self.clear_since[s] = None
                    expected.add((s, "resolved"))
        assert got == expected
        for s, state in sorted(got):
            self.emitted[s].append(state)

    @invariant()
    def firing_and_recovery_alternate(self) -> None:
        for states in self.emitted.values():
            assert all(x != y for x, y in zip(states, states[1:]))
            assert not states or states[0] == "firing"

    @invariant()
    def active_alerts_match_the_model(self) -> None:
        assert {a.subject for a in self.manager.active} == {s for s, v in self.active.items() if v}

    def teardown(self) -> None:
        self.manager.close()


TestDebounce = DebounceMachine.TestCase
TestDebounce.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class Collect:
    def __init__(self) -> None:
        self.alerts = []
        self.lock = threading.Lock()

    @notifier_hookimpl
    def accelerate_alert(self, alert):
        with self.lock:
            self.alerts.append(alert)


def test_events_from_many_threads_while_rules_run():
    sink = Collect()
    manager = AlertManager([BreakerOpen(), ErrorRate(threshold=0.1, min_requests=50),
                            QueueAge(max_age=3600)], [sink], interval=0.005, quiet=0.0).start()
    threads, per_thread = 8, 1500
    barrier = threading.Barrier(threads)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            rid, t = f"{n}-{i}", time.monotonic()
            manager.accelerate_on_queued(RequestQueued(rid, "echo", "echo", 1, 1, t))
            manager.accelerate_on_started(RequestStarted(rid, "echo", "echo", "key-1", 1, 0, t))
            failed = i % 3 == 0
            manager.accelerate_on_finished(RequestFinished(
                rid, "echo", "echo", Outcome.ERROR if failed else Outcome.SUCCESS, 0.01, "key-1", 1,
                error_class="transient" if failed else None, time=t))
            if n == 0 and i % 100 == 0:  # one thread flaps the breaker meanwhile
                old, new = ("closed", "open") if i % 200 == 0 else ("open", "closed")
                manager.accelerate_on_breaker_changed(BreakerChanged("echo@x", old, new, t))

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    manager.close()
    by_subject: dict[tuple[str, str], list[str]] = {}
    for a in sink.alerts:
        by_subject.setdefault((a.rule, a.subject), []).append(a.state)
    # A third of the requests failed: one error-rate incident, never resolved meanwhile.
    assert by_subject[("error_rate", "echo")] == ["firing"]
    # Every breaker incident fired once and recovered once, in order.
    breaker = by_subject[("breaker_open", "echo@x")]
    assert breaker[0] == "firing" and all(x != y for x, y in zip(breaker, breaker[1:]))
    assert breaker.count("firing") <= per_thread // 200 + 1
    # Nothing left waiting: every queued request started.
    assert manager.view.waiting == {}
    assert sum(len(d) for d in manager.view.finished.values()) == threads * per_thread
    assert ("queue_age", "queue") not in by_subject
