"""Budgets through the pipeline, over real HTTP against the OpenAI protocol server:
reserve the worst case before dispatch, settle to the real cost, fail (never retried) or
hold until the window turns, threshold warnings, filters, and a thread-stress run."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import wait
from decimal import Decimal
from typing import Any

import pytest

from ipfs_accelerate_py.costs import Budget, BudgetExceeded
from ipfs_accelerate_py.errors import ConfigError, DeadlineExceeded
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer, ManualClock
from ipfs_accelerate_openai.server import OpenAIServer

MODEL = "gpt-4o-mini"


def chat(i: int = 0, max_tokens: int = 40) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"question {i}: what is a budget for?"}]}


@pytest.fixture
def srv():
    with LocalServer(OpenAIServer(models=(MODEL, "gpt-sim-unpriced"))) as s:
        yield s


def client(srv, budgets, **kw):
    config = {"budgets": budgets, **kw.pop("config", {})}
    return testing.make_client("openai", srv.url + "/v1", config=config, **kw)


class Warnings:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def accelerate_on_budget(self, event: Any) -> None:
        self.events.append(event)


def test_requests_stop_within_one_worst_case_and_settled_spend_is_the_sum_of_costs(srv):
    warnings = Warnings()
    with client(srv, [Budget("small", usd="0.0002")], config={"observers": (warnings,)}) as c:
        results = []
        with pytest.raises(BudgetExceeded) as info:
            for i in range(100):
                results.append(c.call("openai", "chat", chat(i)))
        spend = c.stats().costs["budgets"]["small"]
    err = info.value
    assert err.budget == "small" and err.window == "total" and err.unit == "usd"
    assert "small" in str(err) and err.request_id
    # Refused before it was sent, and not retried: the server saw the successes only.
    assert len(srv.requests) == len(results) > 2
    total = sum(r.cost for r in results)
    assert Decimal(spend["spent"]) == err.spent == total  # exact: no float drift
    assert spend["reserved"] == "0"
    assert total <= Decimal("0.0002") < total + err.needed
    thresholds = [(e.threshold, e.refused) for e in warnings.events]
    assert thresholds == [(0.5, False), (0.8, False), (1.0, True)]
    assert warnings.events[-1].limit == Decimal("0.0002")


def test_a_token_budget_settles_to_the_reported_total(srv):
    # A token limit on the key: the reservation reuses dispatch's input estimate.
    with client(srv, [Budget("tok", tokens=300)], tokens_per_minute=1_000_000) as c:
        done = []
        with pytest.raises(BudgetExceeded) as info:
            for i in range(50):
                done.append(c.call("openai", "chat", chat(i, max_tokens=30)))
        spend = c.stats().costs["budgets"]["tok"]
    assert info.value.unit == "tokens"
    assert spend["spent"] == sum(r.usage.total_tokens for r in done) <= 300
    assert spend["spent"] + info.value.needed > 300


def test_filters_by_tag_model_and_backend(srv):
    budgets = [Budget("team-a", usd="0.00001", tags={"team": "a"}),
               Budget("other-model", usd="0.00001", model="gpt-4.1"),
               Budget("other-backend", usd="0.00001", backend="claude")]
    with client(srv, budgets) as c:
        with pytest.raises(BudgetExceeded) as info:
            c.call("openai", "chat", chat(), tags={"team": "a"})
        assert info.value.budget == "team-a"
        ok = c.call("openai", "chat", chat(), tags={"team": "b"})
        assert ok.cost > 0


def test_a_dollar_budget_refuses_a_model_without_a_price(srv):
    with client(srv, [Budget("all", usd=5)]) as c:
        with pytest.raises(BudgetExceeded, match="has no price"):
            c.call("openai", "chat", dict(chat(), model="gpt-sim-unpriced"))
    assert not srv.requests


def test_failed_attempts_give_their_reservation_back(srv):
    from ipfs_accelerate_py.server import ServerResponse

    srv.script(ServerResponse.json({"error": {"message": "down", "type": "server_error"}}, 503),
               ServerResponse.json({"error": {"message": "down", "type": "server_error"}}, 503))
    with client(srv, [Budget("b", usd="1")]) as c:
        res = c.call("openai", "chat", chat())
        spend = c.stats().costs["budgets"]["b"]
    assert res.attempts == 3
    assert Decimal(spend["spent"]) == res.cost and spend["reserved"] == "0"


def test_stream_settles_at_its_end_and_a_cut_stream_keeps_its_worst_case(srv):
    from ipfs_accelerate_py.errors import StreamError
    from ipfs_accelerate_py.server import ServerResponse

    with client(srv, [Budget("s", usd="1")]) as c:
        stream = c.stream("openai", "chat", chat())
        reserved = Decimal(c.stats().costs["budgets"]["s"]["reserved"])
        assert reserved > 0  # held while the stream is open
        res = stream.collect()
        after = c.stats().costs["budgets"]["s"]
        assert (Decimal(after["spent"]), after["reserved"]) == (res.cost, "0")

        # A stream cut after its first chunk: the provider billed what it produced, which
        # we cannot see, so the reservation is kept as spend.
        proto = srv.protocol

        def cut(req):
            full = proto(req)
            chunks = list(full.body)
            return ServerResponse.stream(iter_cut(chunks[:2]), headers=full.headers)

        def iter_cut(chunks):
            yield from chunks
            from ipfs_accelerate_py.server import CutConnection

            raise CutConnection()

        srv.script(cut)
        broken = c.stream("openai", "chat", chat(1))
        with pytest.raises(StreamError):
            broken.collect()
        final = c.stats().costs["budgets"]["s"]
    assert final["reserved"] == "0"
    assert Decimal(final["spent"]) == res.cost + reserved


class Wall:
    """A wall clock the test moves (budget windows are UTC calendar days)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_hold_waits_for_the_window_to_turn_and_obeys_its_deadline(srv):
    from ipfs_accelerate_py import BackendConfig, Client, ClientConfig

    clock = ManualClock()
    day = Budget("daily", usd="0.000033", window="day", on_exceed="hold")
    c = Client([BackendConfig("openai", keys=["test-key-1"], base_url=srv.url + "/v1")],
               ClientConfig(budgets=[day], default_deadline=None), clock=clock)
    try:
        c._pipeline.s.costs.wall_clock = wall = Wall(1_700_006_400.0 - 60)  # a minute to midnight
        first = c.call("openai", "chat", chat(0))
        assert first.cost <= Decimal("0.000033")
        late = c.submit("openai", "chat", chat(1), deadline=30)
        held = c.submit("openai", "chat", chat(2), deadline=3600)
        for f in (late, held):  # wait (real time, bounded) until both were refused and held
            end = time.monotonic() + 10
            while not (isinstance(f._job.last_error, BudgetExceeded)
                       and f._job.entry.state == "queued") and time.monotonic() < end:
                time.sleep(0.005)
            assert f._job.entry.state == "queued" and not f.done()
        clock.advance(31)  # the first one's deadline passes while it is held
        with pytest.raises(DeadlineExceeded) as info:
            late.result(timeout=10)
        assert isinstance(info.value.last_error, BudgetExceeded)
        assert not held.done()
        wall.t += 60  # midnight: a new window
        clock.advance(30)
        assert held.result(timeout=10).cost > 0
        spend = c.stats().costs["budgets"]["daily"]
    finally:
        c.close(wait=False)  # a held request would wait for the test's clock
    assert spend["window"] == "2023-11-15" and Decimal(spend["spent"]) == held.result().cost


def test_budget_configuration_errors_name_the_problem():
    with pytest.raises(ConfigError, match="exactly one of usd= or tokens="):
        Budget("x")
    with pytest.raises(ConfigError, match="never turns"):
        Budget("x", usd=1, on_exceed="hold")
    with pytest.raises(ConfigError, match="window"):
        Budget("x", usd=1, window="week")
    with pytest.raises(ConfigError, match="more decimals"):
        Budget("x", usd="0.0000000000001")
    with pytest.raises(ConfigError, match="limit must be > 0"):
        Budget("x", tokens=0)
    with pytest.raises(ConfigError, match="expected Budget objects"):
        testing.make_client("openai", "http://127.0.0.1:9/v1", config={"budgets": [5]})
    with pytest.raises(ConfigError, match="expected Budget objects"):
        testing.make_client("openai", "http://127.0.0.1:9/v1", config={"budgets": 5})
    one = testing.make_client("openai", "http://127.0.0.1:9/v1",
                              config={"budgets": Budget("only", usd=1)})
    assert one.config.budgets == (Budget("only", usd=1),)
    one.close()
    with pytest.raises(ConfigError, match="share a name"):
        testing.make_client("openai", "http://127.0.0.1:9/v1",
                            config={"budgets": [Budget("x", usd=1), Budget("x", tokens=5)]})


def test_thread_stress_nothing_lost_spend_exact_and_within_the_limit(srv):
    limit = Decimal("0.0005")
    with client(srv, [Budget("stress", usd=limit)], concurrency=8) as c:
        futures = []
        lock = threading.Lock()

        def submit(t: int) -> None:
            for i in range(40):
                f = c.submit("openai", "chat", chat(t * 100 + i), tags={"thread": t % 3})
                with lock:
                    futures.append(f)

        threads = [threading.Thread(target=submit, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(futures, timeout=60)
        assert all(f.done() for f in futures)  # nothing lost
        ok = [f.result() for f in futures if f.exception() is None]
        refused = [f.exception() for f in futures if f.exception() is not None]
        assert all(isinstance(e, BudgetExceeded) for e in refused)
        stats = c.stats()
    assert len(ok) + len(refused) == 320 and ok and refused
    spend = stats.costs["budgets"]["stress"]
    spent = Decimal(spend["spent"])
    assert spend["reserved"] == "0"
    assert spent == sum(r.cost for r in ok) == Decimal(stats.costs["total"]["spend"])
    assert spent <= limit
    assert limit - spent < max(e.needed for e in refused)  # stopped near the limit
    assert len(srv.requests) == len(ok)  # each sent once: no duplicates
    assert sum(Decimal(d["spend"]) for d in stats.costs["tags"].values()) == spent
    json.dumps(stats.to_dict())  # the snapshot stays JSON data
