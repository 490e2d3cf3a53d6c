"""The budget ledger under any interleaving of reserve / settle / cancel (hypothesis
stateful), and from many threads at once."""

from __future__ import annotations

import random
import threading

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ipfs_accelerate_py.costs import MemoryLedger

LIMIT = 1_000


class LedgerMachine(RuleBasedStateMachine):
    """A ticket settles at most once, at any cost up to twice its reservation (an input
    underestimated); a cancelled one costs nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = MemoryLedger()
        self.open: list[int] = []  # reservations in flight
        self.costs: list[int] = []  # what each settled request cost
        self.overage = 0  # what settled requests cost beyond their reservation

    @rule(amount=st.integers(1, 400))
    def reserve(self, amount: int) -> None:
        fits = self.spent() + sum(self.open) + amount <= LIMIT
        refused = self.ledger.reserve([("b|total", amount, LIMIT)])
        assert (refused is None) == fits
        if refused is None:
            self.open.append(amount)

    @precondition(lambda self: self.open)
    @rule(data=st.data(), over=st.booleans())
    def settle(self, data: st.DataObject, over: bool) -> None:
        i = data.draw(st.integers(0, len(self.open) - 1))
        amount = self.open.pop(i)
        actual = data.draw(st.integers(0, 2 * amount if over else amount))
        self.ledger.settle([("b|total", amount, actual)])
        self.costs.append(actual)
        self.overage += max(0, actual - amount)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        amount = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
        self.ledger.settle([("b|total", amount, 0)])

    def spent(self) -> int:
        return self.ledger.usage("b|total")[0]

    @invariant()
    def settled_is_the_sum_of_the_costs(self) -> None:
        settled, reserved = self.ledger.usage("b|total")
        assert settled == sum(self.costs)
        assert reserved == sum(self.open)

    @invariant()
    def spend_stays_within_the_limit_but_for_underestimates(self) -> None:
        settled, reserved = self.ledger.usage("b|total")
        # While no call costs more than its reservation nothing passes the limit; one that
        # does overshoots by its excess only.
        assert settled + reserved <= LIMIT + self.overage
        if self.overage == 0:
            assert settled <= LIMIT


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_reserve_is_all_or_nothing_across_budgets() -> None:
    ledger = MemoryLedger()
    assert ledger.reserve([("a|total", 5, 10), ("b|total", 5, 6)]) is None
    assert ledger.reserve([("a|total", 5, 10), ("b|total", 5, 6)]) == 1
    assert ledger.usage("a|total") == (0, 5)  # the refused second budget kept nothing of it
    assert ledger.settle([("a|total", 5, 3), ("b|total", 5, 4)]) == [(0, 3), (0, 4)]
    assert ledger.usage("a|total") == (3, 0)


def test_threads_never_overshoot_and_lose_nothing() -> None:
    ledger = MemoryLedger()
    limit = 50_000
    costs: list[int] = []
    largest = [0]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2_000):
            amount = rng.randint(1, 200)
            if ledger.reserve([("t|total", amount, limit)]) is not None:
                continue
            with lock:
                largest[0] = max(largest[0], amount)
            if rng.random() < 0.2:
                ledger.settle([("t|total", amount, 0)])  # failed / cancelled
                continue
            actual = rng.randint(0, amount)
            ledger.settle([("t|total", amount, actual)])
            with lock:
                costs.append(actual)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settled, reserved = ledger.usage("t|total")
    assert reserved == 0
    assert settled == sum(costs)
    assert settled <= limit
    assert limit - settled <= 200  # the last refusals came within one worst case
