"""Tests of the priority request queue: ordering, bound, delays, deadlines, batching."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ipfs_accelerate_py.errors import ConfigError, QueueFullError
from ipfs_accelerate_py.queue import PriorityRequestQueue, QueueEntry

GROUPS = ["a", "b", "c"]
BATCH_KEYS = [None, "x", "y"]


def entry(priority=1, seq=0, group="a", deadline=None, not_before=0.0, batch_key=None, payload=None):
    return QueueEntry(priority, seq, group, payload, deadline=deadline, not_before=not_before,
                      batch_key=batch_key)


def heap_items(q: PriorityRequestQueue) -> int:
    n = len(q._deadlines)
    for g in q._groups.values():
        n += len(g.ready) + len(g.delayed) + sum(len(h) for h in g.batches.values())
    return n


# --- unit tests ---------------------------------------------------------------------


def test_entry_uses_slots():
    e = entry()
    assert not hasattr(e, "__dict__")
    with pytest.raises(AttributeError):
        e.other = 1  # type: ignore[attr-defined]
    assert e.state == "new"
    # small: well under 1 KB per entry including heap bookkeeping
    assert sys.getsizeof(e) < 200


def test_priority_then_fifo():
    q = PriorityRequestQueue()
    order = [(2, 0), (1, 1), (0, 2), (1, 3), (0, 4), (2, 5)]
    for p, s in order:
        q.push(entry(p, s), 0.0)
    got = [(e.priority, e.seq) for e in iter(lambda: q.pop(0.0), None)]
    assert got == sorted(order)
    assert len(q) == 0 and q.groups() == []


def test_bound_and_requeue_never_raises():
    q = PriorityRequestQueue(maxsize=2)
    a, b, c = entry(seq=1), entry(seq=2), entry(seq=3)
    q.push(a, 0)
    q.push(b, 0)
    assert q.full()
    with pytest.raises(QueueFullError):
        q.push(c, 0)
    assert c.state == "new" and len(q) == 2
    taken = q.pop(0)
    assert taken is a and taken.state == "taken"
    q.push(c, 0)
    q.requeue(a, 0)  # over the bound: a retry must not be lost
    assert len(q) == 3 and a.state == "queued"
    with pytest.raises(QueueFullError):
        q.push(entry(seq=4), 0)


def test_delayed_entries_count_toward_bound():
    q = PriorityRequestQueue(maxsize=1)
    q.push(entry(not_before=10.0), 0.0)
    with pytest.raises(QueueFullError):
        q.push(entry(seq=1), 0.0)


def test_bad_maxsize():
    with pytest.raises(ConfigError):
        PriorityRequestQueue(maxsize=0)


def test_double_push_rejected():
    q = PriorityRequestQueue()
    e = entry()
    q.push(e, 0)
    with pytest.raises(ValueError):
        q.push(e, 0)
    assert len(q) == 1


def test_not_before_holds_entry_aside():
    q = PriorityRequestQueue()
    late = entry(0, 1, not_before=5.0)
    early = entry(2, 2)
    q.push(late, 0.0)
    q.push(early, 0.0)
    assert q.pop(1.0) is early
    assert q.pop(4.9) is None
    assert q.next_wakeup(4.9) == 5.0
    assert q.pop(5.0) is late


def test_ready_filter_skips_groups_and_calls_once():
    q = PriorityRequestQueue()
    a = entry(0, 1, group="a")
    b = entry(1, 2, group="b")
    q.push(a, 0)
    q.push(b, 0)
    q.push(entry(2, 3, group="a"), 0)
    calls: list[str] = []

    def ready(g):
        calls.append(g)
        return g != "a"

    assert q.pop(0, ready) is b
    assert sorted(calls) == sorted(set(calls))
    calls.clear()
    assert q.pop(0, ready) is None
    assert calls == ["a"]
    assert q.depth("a") == 2 and q.depth("b") == 0 and q.groups() == ["a"]


def test_ready_not_called_for_group_with_only_delayed_entries():
    q = PriorityRequestQueue()
    q.push(entry(group="a", not_before=10), 0)
    called = []
    assert q.pop(0, lambda g: called.append(g) or True) is None
    assert called == []


def test_expire_order_and_states():
    q = PriorityRequestQueue()
    e3 = entry(seq=1, deadline=3.0)
    e1 = entry(seq=2, deadline=1.0)
    e2 = entry(seq=3, deadline=2.0, not_before=50.0)  # delayed entries expire too
    keep = entry(seq=4, deadline=10.0)
    none = entry(seq=5)
    for e in (e3, e1, e2, keep, none):
        q.push(e, 0.0)
    assert q.next_wakeup(0.0) == 1.0
    assert q.expire(0.5) == []
    out = q.expire(3.0)
    assert out == [e1, e2, e3]
    assert all(e.state == "expired" for e in out)
    assert len(q) == 2
    assert q.next_wakeup(3.0) == 10.0
    assert q.pop(3.0) is keep
    assert q.next_wakeup(3.0) is None
    assert q.pop(3.0) is none


def test_remove():
    q = PriorityRequestQueue()
    a, b = entry(seq=1, deadline=5), entry(seq=2)
    q.push(a, 0)
    q.push(b, 0)
    assert q.remove(a) is True
    assert a.state == "removed"
    assert q.remove(a) is False
    assert len(q) == 1
    assert q.expire(10) == []
    assert q.pop(0) is b
    assert q.remove(b) is False


def test_pop_batch():
    q = PriorityRequestQueue()
    es = [entry(1, i, group="g", batch_key="m" if i % 2 else "n") for i in range(10)]
    other_group = entry(0, 100, group="h", batch_key="m")
    delayed = entry(0, 101, group="g", batch_key="m", not_before=5)
    for e in es + [other_group, delayed]:
        q.push(e, 0)
    first = q.pop(0, lambda g: g == "g")
    assert first is es[0] and first.batch_key == "n"
    more = q.pop_batch(first, 3, 0)
    assert more == [es[2], es[4], es[6]]
    assert all(e.state == "taken" for e in more)
    like = es[1]
    assert q.pop_batch(like, 100, 0) == [es[1], es[3], es[5], es[7], es[9]]
    assert q.pop_batch(like, 100, 5) == [delayed]
    assert q.pop_batch(entry(group="g"), 5, 5) == []  # batch_key None
    assert q.pop_batch(first, 0, 5) == []
    assert len(q) == 2 and set(q.groups()) == {"g", "h"}


def test_pop_batch_uses_index_not_scan():
    q = PriorityRequestQueue()
    for i in range(2000):
        q.push(entry(1, i, group="g", batch_key=None), 0)
    q.push(entry(1, 5000, group="g", batch_key="k"), 0)
    like = entry(1, 0, group="g", batch_key="k")
    # the index for "k" holds exactly one item; the 2000 others are never looked at
    assert len(q._groups["g"].batches["k"]) == 1
    assert [e.seq for e in q.pop_batch(like, 10, 0)] == [5000]


def test_requeue_after_take_no_duplicates():
    q = PriorityRequestQueue()
    e = entry(seq=1, deadline=100, batch_key="k")
    q.push(e, 0)
    assert q.pop(0) is e
    e.not_before = 3.0
    q.requeue(e, 1.0)
    assert q.pop(2.0) is None
    assert q.next_wakeup(2.0) == 3.0
    assert q.pop(3.0) is e
    assert q.pop(3.0) is None
    assert q.pop_batch(e, 5, 3.0) == []
    assert q.expire(200) == []
    assert len(q) == 0


def test_compaction_keeps_memory_proportional():
    q = PriorityRequestQueue()
    keep = []
    for i in range(5000):
        e = entry(i % 3, i, group=GROUPS[i % 3], deadline=1000.0 + i, batch_key="k")
        q.push(e, 0)
        if i % 50 == 0:
            keep.append(e)
        else:
            q.remove(e)
    assert len(q) == len(keep)
    assert q._items == heap_items(q)
    assert heap_items(q) <= 6 * len(q) + 1024
    got = []
    while (e := q.pop(0)) is not None:
        got.append(e)
    assert sorted(got, key=lambda e: (e.priority, e.seq)) == got
    assert set(map(id, got)) == set(map(id, keep))


def test_many_entries_push_pop_order():
    q = PriorityRequestQueue(maxsize=100_000)
    import random

    rng = random.Random(7)
    for i in range(20_000):
        q.push(entry(rng.randrange(3), i, group=rng.choice(GROUPS)), 0)
    prev = (-1, -1)
    n = 0
    while (e := q.pop(0)) is not None:
        assert (e.priority, e.seq) > prev
        prev = (e.priority, e.seq)
        n += 1
    assert n == 20_000


# --- stateful model test ------------------------------------------------------------


class QueueMachine(RuleBasedStateMachine):
    """Compares the queue with a trivially correct model: a dict of queued entries."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.seq = 0
        self.model: dict[int, QueueEntry] = {}  # id -> queued entry
        self.out: dict[int, QueueEntry] = {}  # every entry handed back (taken / expired / removed)
        self.all: list[QueueEntry] = []

    @initialize(maxsize=st.one_of(st.none(), st.integers(1, 12)))
    def setup(self, maxsize):
        self.maxsize = maxsize
        self.q = PriorityRequestQueue(maxsize)

    def _eligible(self, groups=None):
        return [e for e in self.model.values()
                if e.not_before <= self.now and (groups is None or e.group in groups)]

    @rule(priority=st.integers(0, 2), group=st.sampled_from(GROUPS),
          deadline=st.one_of(st.none(), st.floats(0, 20)),
          delay=st.one_of(st.just(0.0), st.floats(0, 10)),
          batch_key=st.sampled_from(BATCH_KEYS))
    def push(self, priority, group, deadline, delay, batch_key):
        self.seq += 1
        e = entry(priority, self.seq, group,
                  deadline=None if deadline is None else self.now + deadline,
                  not_before=self.now + delay, batch_key=batch_key)
        self.all.append(e)
        if self.maxsize is not None and len(self.model) >= self.maxsize:
            with pytest.raises(QueueFullError):
                self.q.push(e, self.now)
            assert e.state == "new"
        else:
            self.q.push(e, self.now)
            self.model[id(e)] = e
            assert e.state == "queued"

    @rule(data=st.data(), delay=st.floats(0, 5), new_deadline=st.booleans())
    def requeue_taken(self, data, delay, new_deadline):
        taken = [e for e in self.out.values() if e.state == "taken"]
        if not taken:
            return
        e = data.draw(st.sampled_from(taken))
        e.not_before = self.now + delay
        if new_deadline:
            e.deadline = self.now + delay + 1.0
        self.q.requeue(e, self.now)  # never raises, even when full
        del self.out[id(e)]
        self.model[id(e)] = e

    @rule(dt=st.floats(0, 4))
    def advance(self, dt):
        self.now += dt

    @rule(ready_groups=st.sets(st.sampled_from(GROUPS)))
    def pop(self, ready_groups):
        calls: list[str] = []

        def ready(g):
            calls.append(g)
            return g in ready_groups

        got = self.q.pop(self.now, ready)
        assert len(calls) == len(set(calls)), "ready() called twice for a group"
        eligible = self._eligible(ready_groups)
        if not eligible:
            assert got is None
            return
        best = min(eligible, key=lambda e: (e.priority, e.seq))
        assert got is best
        assert got.state == "taken"
        self._taken(got)

    def _taken(self, e):
        assert id(e) in self.model, "returned an entry that was not queued"
        assert id(e) not in self.out, "returned an entry twice"
        del self.model[id(e)]
        self.out[id(e)] = e

    @rule(data=st.data(), limit=st.integers(0, 5))
    def pop_batch(self, data, limit):
        candidates = [e for e in self.all if e.batch_key is not None]
        if not candidates:
            return
        like = data.draw(st.sampled_from(candidates))
        got = self.q.pop_batch(like, limit, self.now)
        expected = sorted((e for e in self._eligible({like.group}) if e.batch_key == like.batch_key),
                          key=lambda e: (e.priority, e.seq))[:limit]
        assert got == expected
        for e in got:
            assert e.state == "taken"
            self._taken(e)

    @rule()
    def expire(self):
        got = self.q.expire(self.now)
        expected = sorted((e for e in self.model.values()
                           if e.deadline is not None and e.deadline <= self.now),
                          key=lambda e: (e.deadline, e.priority, e.seq))
        assert got == expected
        for e in got:
            assert e.state == "expired"
            self._taken(e)

    @rule(data=st.data())
    def remove(self, data):
        if not self.all:
            return
        e = data.draw(st.sampled_from(self.all))
        was_queued = id(e) in self.model
        assert self.q.remove(e) is was_queued
        if was_queued:
            assert e.state == "removed"
            self._taken(e)

    @rule()
    def next_wakeup(self):
        times = [e.not_before for e in self.model.values() if e.not_before > self.now]
        times += [e.deadline for e in self.model.values() if e.deadline is not None]
        assert self.q.next_wakeup(self.now) == (min(times) if times else None)

    @invariant()
    def counts_exact(self):
        if not hasattr(self, "q"):
            return
        assert len(self.q) == len(self.model)
        assert bool(self.q) == bool(self.model)
        for g in GROUPS:
            assert self.q.depth(g) == sum(1 for e in self.model.values() if e.group == g)
        assert sorted(self.q.groups()) == sorted({e.group for e in self.model.values()})
        assert self.q.full() == (self.maxsize is not None and len(self.model) >= self.maxsize)
        assert self.q._items == heap_items(self.q)
        for e in self.model.values():
            assert e.state == "queued"


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
