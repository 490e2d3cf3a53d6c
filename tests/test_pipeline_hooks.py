"""Hooks: events reach monitoring plugins; a raising hook fails only its request."""

from __future__ import annotations

import attrs
import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request, RetryPolicy, hookimpl
from ipfs_accelerate_py.errors import PluginError, TransientError
from ipfs_accelerate_py.events import Outcome, RequestFinished
from ipfs_accelerate_py.retry import RetryDecision
from ipfs_accelerate_py.server import ServerResponse


class EventLog:
    """A monitoring plugin keeping every request event by kind."""

    def __init__(self) -> None:
        self.seen: dict[str, list] = {"queued": [], "started": [], "retried": [], "finished": []}

    @hookimpl
    def accelerate_on_queued(self, event):
        self.seen["queued"].append(event)

    @hookimpl
    def accelerate_on_started(self, event):
        self.seen["started"].append(event)

    @hookimpl
    def accelerate_on_retried(self, event):
        self.seen["retried"].append(event)

    @hookimpl
    def accelerate_on_finished(self, event):
        self.seen["finished"].append(event)


def make(pm, srv, **cfg):
    return Client([BackendConfig("echo", keys=["test-key-1", "test-key-2"], base_url=srv.url)],
                  ClientConfig(retry=RetryPolicy(base_delay=0.001), **cfg), plugin_manager=pm)


def test_monitoring_events_for_every_stage(pm, echo_server):
    monitor = EventLog()
    seen = monitor.seen
    pm.add_plugin(monitor, name="monitor")
    echo_server.script(ServerResponse.json({"error": {"message": "x"}}, 500))
    with make(pm, echo_server) as c:
        req = Request("echo", {"n": 1}, backend="echo")
        c.call(req)
    assert [e.request_id for e in seen["queued"]] == [req.request_id]
    assert [e.attempt for e in seen["started"]] == [1, 2]
    assert seen["retried"][0].error_class == "transient" and seen["retried"][0].status == 500
    fin = seen["finished"]
    assert len(fin) == 1 and fin[0].outcome is Outcome.SUCCESS and fin[0].attempts == 2
    assert fin[0].key_id and fin[0].latency > 0
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fin[0].attempts = 3


def test_raising_strategy_fails_only_its_requests(pm, echo_server):
    class Picky:
        def select(self, request, candidates):
            if request.payload.get("n") == 13:
                raise RuntimeError("unlucky")
            return candidates[0]

    class PickyPlugin:
        @hookimpl
        def accelerate_strategies(self):
            return {"picky": Picky}

    pm.add_plugin(PickyPlugin(), name="picky-plugin")
    with make(pm, echo_server, strategy="picky") as c:
        futs = [c.submit("echo", "echo", {"n": i}) for i in range(20)]
        for i, f in enumerate(futs):
            if i == 13:
                with pytest.raises(PluginError, match="picky.*unlucky"):
                    f.result(10)
            else:
                assert f.result(10).text == f'{{"n": {i}}}'


def test_backoff_hook_can_replace_the_policy(pm, echo_server):
    class NeverRetry:
        @hookimpl(tryfirst=True)
        def accelerate_backoff(self, request, attempt, error, policy, now, deadline, rng):
            return RetryDecision(False, 0.0, "plugin says no")

    pm.add_plugin(NeverRetry(), name="never")
    echo_server.script(ServerResponse.json({"error": {"message": "x"}}, 503))
    with make(pm, echo_server) as c:
        with pytest.raises(TransientError):
            c.call("echo", "echo", {"n": 1})
    assert len(echo_server.requests) == 1


def test_broken_monitor_does_not_lose_work(pm, echo_server):
    class Broken:
        @hookimpl
        def accelerate_on_finished(self, event: RequestFinished):
            raise ValueError("exporter down")

    pm.add_plugin(Broken(), name="broken")
    with make(pm, echo_server) as c:
        assert c.call("echo", "echo", {"n": 1}).text == '{"n": 1}'


def test_custom_queue_factory_is_used(pm, echo_server):
    from ipfs_accelerate_py.queue import PriorityRequestQueue

    made = []

    class CountingQueue(PriorityRequestQueue):
        pushed = 0

        def push(self, entry, now):
            self.pushed += 1
            super().push(entry, now)

    class QueuePlugin:
        @hookimpl
        def accelerate_make_queue(self, config):
            q = CountingQueue(maxsize=config.queue_size)
            made.append(q)
            return q

    pm.add_plugin(QueuePlugin(), name="queue")
    with make(pm, echo_server) as c:
        c.call("echo", "echo", {"n": 1})
    assert len(made) == 1 and made[0].pushed == 1


def test_events_carry_the_request_tags_model_and_result(pm, echo_server):
    watch = EventLog()
    seen = watch.seen
    pm.add_plugin(watch, name="watch-tags")
    with Client([BackendConfig("echo", keys=["test-key-1"], base_url=echo_server.url)],
                ClientConfig(), plugin_manager=pm) as c:
        result = c.call(Request("echo", {"n": 7, "model": "m-1"}, backend="echo",
                                tags={"team": "search", "job": "nightly"}))
    for kind in ("queued", "started", "finished"):
        assert [dict(e.tags) for e in seen[kind]] == [{"team": "search", "job": "nightly"}], kind
    assert seen["queued"][0].model == "m-1"
    finished = seen["finished"][0]
    assert finished.result is result and finished.response_id == result.provider_request_id
