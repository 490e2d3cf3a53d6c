"""The cost tracker's budget bookkeeping under any interleaving of reservations,
settlements, failed attempts and a moving wall clock (hypothesis stateful): nothing leaks,
settled spend is the sum of what finished requests cost, refusals say why correctly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ipfs_accelerate_py import Request
from ipfs_accelerate_py.costs import Budget, CostTracker, PriceBook, to_units
from ipfs_accelerate_py.results import Result, Usage

DAY = 86_400.0
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class _Backend:
    @staticmethod
    def estimate_tokens(request: Any) -> int:
        return int(request.payload["in"]) + int(request.payload["max_tokens"])


class _Config:
    options: dict = {}


class _State:
    name = "openai"
    needs_tokens = False
    config = _Config()
    backend = _Backend()


class _Job:
    """What the tracker reads of a pipeline job."""

    def __init__(self, n_in: int, max_tokens: int, team: str) -> None:
        self.request = Request("chat", {"model": "gpt-4o-mini", "in": n_in,
                                        "max_tokens": max_tokens}, backend="openai",
                               tags={"team": team})
        self.bstate = _State()
        self.key_id = "key-1"
        self.tokens = None
        self.reservation = None
        self.cost_units = None
        self.cost_model = None


class Wall:
    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> float:
        return self.t


class TrackerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wall = Wall()
        self.budgets = [Budget("all", usd="0.0005"),
                        Budget("team-a", tokens=3_000, window="day", tags={"team": "a"},
                               on_exceed="hold")]
        self.tracker = CostTracker(PriceBook(), self.budgets, wall_clock=self.wall)
        self.in_flight: list[_Job] = []
        self.spent_usd = 0  # pico-dollars of finished requests (the "all" budget)
        self.spent_tokens: dict[str, int] = {}  # day -> tokens of team a's finished requests

    @rule(n_in=st.integers(1, 400), max_tokens=st.integers(1, 400), team=st.sampled_from("ab"))
    def reserve(self, n_in: int, max_tokens: int, team: str) -> None:
        job = _Job(n_in, max_tokens, team)
        refused = self.tracker.reserve([job], "key-1")
        if not refused:
            assert job.reservation is not None
            self.in_flight.append(job)
            return
        [(j, why)] = refused
        assert j is job and job.reservation is None
        err = why.error
        budget = next(b for b in self.budgets if b.name == err.budget)
        settled, reserved = self.usage(budget)
        needed = to_units(err.needed) if budget.usd is not None else err.needed
        assert settled + reserved + needed > budget.limit  # refused only when it did not fit
        if settled + needed <= budget.limit:
            assert why.delay is not None and why.delay < 1  # in-flight ones are in the way
        elif budget.on_exceed == "hold":
            assert why.delay == budget.seconds_to_turn(self.wall.t)
        else:
            assert why.delay is None

    def usage(self, b: Budget) -> tuple[int, int]:
        return self.tracker.ledger.usage(f"{b.name}|{b.window_id(self.wall.t)}")

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), failed=st.booleans())
    def finish(self, data: st.DataObject, failed: bool) -> None:
        job = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        if failed:  # a failed attempt gives its reservation back
            self.tracker.release(job)
            assert job.reservation is None
            return
        # It settles into the window it reserved in, even after midnight.
        day = next((k.split("|", 1)[1] for b, k, _ in job.reservation if b.name == "team-a"),
                   None)
        n_in = job.request.payload["in"]
        out = data.draw(st.integers(0, job.request.payload["max_tokens"]))
        usage = Usage.of(n_in, out)
        result = Result(text="x", usage=usage, model="gpt-4o-mini-2024-07-18")
        self.tracker.price_result(job, result)
        self.tracker.finished(job, usage, None, True)
        assert job.reservation is None
        self.spent_usd += to_units(result.cost)
        if day is not None:
            self.spent_tokens[day] = self.spent_tokens.get(day, 0) + usage.total_tokens

    @rule(hours=st.integers(1, 30))
    def time_passes(self, hours: int) -> None:
        # Requests in flight across midnight settle into the window they reserved in.
        self.wall.t += hours * 3600.0

    @invariant()
    def nothing_leaks_and_spend_is_exact(self) -> None:
        settled, reserved = self.tracker.ledger.usage("all|total")
        assert settled == self.spent_usd <= self.budgets[0].limit
        assert reserved == sum(e[2] for j in self.in_flight for e in j.reservation
                               if e[0].name == "all")
        for day, tokens in self.spent_tokens.items():
            assert self.tracker.ledger.usage(f"team-a|{day}")[0] == tokens <= 3_000

    def teardown(self) -> None:
        for job in self.in_flight:
            self.tracker.release(job)
        assert self.tracker.ledger.usage("all|total")[1] == 0
        spend = self.tracker.spend()
        assert Decimal(spend["all"]["spent"]) * 10**12 == self.spent_usd


TestTrackerMachine = TrackerMachine.TestCase
TestTrackerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
