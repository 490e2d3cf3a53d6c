"""Alerting: rules, debouncing, and the log, webhook and command notifiers, end to end
through a real client and a local webhook receiver."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request
from ipfs_accelerate_py.config import BreakerPolicy, RetryPolicy
from ipfs_accelerate_py.events import (BreakerChanged, Outcome, RequestFinished, RequestQueued,
                                       RequestRetried, RequestStarted)
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer

from ipfs_accelerate_alerts import (AlertManager, BreakerOpen, BudgetThreshold, CommandNotifier,
                                    ErrorRate, KeyRejected, LogNotifier, QueueAge, RateLimitShare,
                                    WebhookNotifier)
from ipfs_accelerate_alerts import plugin as alerts_plugin

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
import echo_backend  # noqa: E402


class Receiver:
    """A local webhook receiver recording every JSON body it gets."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.status = status
        self.got = threading.Condition()
        self.server = LocalServer(self._app)

    def _app(self, req):
        with self.got:
            self.bodies.append(json.loads(req.body))
            self.got.notify_all()
        return ServerResponse.json({"ok": True}, self.status)

    def wait(self, n: int, timeout: float = 20.0) -> list[dict]:
        with self.got:
            self.got.wait_for(lambda: len(self.bodies) >= n, timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _finished(rid: str, outcome: Outcome, t: float, key: str | None = "key-1",
              error_class: str | None = None) -> RequestFinished:
    return RequestFinished(rid, "echo", "echo", outcome, 0.01, key, 1, error_class=error_class,
                           time=t)


def test_breaker_outage_sends_one_alert_and_one_recovery_to_the_webhook(receiver):
    """A real client: the server fails until the breaker opens, then recovers."""
    alerts = AlertManager([BreakerOpen()], [WebhookNotifier(receiver.server.url + "/hook",
                                                            structured=True)], quiet=0.0,
                          interval=0.05)
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo_backend")
    pm.add_plugin(alerts, name="alerts")
    echo = LocalServer(echo_backend.EchoServer())
    failing = ServerResponse.json({"error": {"message": "down"}}, 503)
    echo.script(*[failing] * 6)
    try:
        with Client([BackendConfig("echo", keys=["test-key-1"], base_url=echo.url)],
                    ClientConfig(max_concurrency=2,
                                 retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=20,
                                                   budget_ratio=10, budget_min_per_second=100),
                                 breaker=BreakerPolicy(window_size=4, minimum_calls=2,
                                                       open_interval=0.1, max_open_interval=0.2)),
                    plugin_manager=pm) as client:
            results = [client.submit(Request("echo", {"n": i}, backend="echo")) for i in range(4)]
            assert [f.result(30).text for f in results] == [f'{{"n": {i}}}' for i in range(4)]
        alerts.close()
    finally:
        echo.close()
    bodies = receiver.wait(2)
    assert len(bodies) == 2, bodies  # debounced: open/half-open flaps are one incident
    assert bodies[0]["text"].startswith("[FIRING] ipfs-accelerate breaker_open")
    assert bodies[0]["alert"]["state"] == "firing" and bodies[0]["alert"]["subject"].startswith("echo@")
    assert bodies[1]["text"].startswith("[RESOLVED]") and bodies[1]["alert"]["state"] == "resolved"
    assert "test-key-1" not in json.dumps(bodies)


def test_stayed_open_fires_only_after_the_given_time():
    alerts = AlertManager([BreakerOpen(min_open=30, name="breaker_stuck")], [], quiet=0)
    t0 = time.monotonic()
    alerts.accelerate_on_breaker_changed(BreakerChanged("echo@x", "closed", "open", t0))
    alerts.accelerate_on_breaker_changed(BreakerChanged("echo@x", "open", "half_open", t0 + 10))
    alerts.accelerate_on_breaker_changed(BreakerChanged("echo@x", "half_open", "open", t0 + 11))
    assert alerts.evaluate(t0 + 29) == []
    fired = alerts.evaluate(t0 + 31)  # open since t0 through the half-open probe
    assert [(a.rule, a.state) for a in fired] == [("breaker_stuck", "firing")]
    assert alerts.evaluate(t0 + 40) == []  # still the same incident
    # Closing evaluates at once (no wait for the periodic evaluation): recovered.
    alerts.accelerate_on_breaker_changed(BreakerChanged("echo@x", "open", "closed", t0 + 41))
    assert alerts.active == []
    alerts.close()
    assert [(a.rule, a.state) for a in alerts.delivered] == [("breaker_stuck", "firing"),
                                                             ("breaker_stuck", "resolved")]


def test_debounce_waits_for_quiet_before_recovering_and_refires_on_a_new_incident():
    alerts = AlertManager([QueueAge(max_age=5)], [], quiet=3)
    t0 = time.monotonic()
    alerts.accelerate_on_queued(RequestQueued("r1", "echo", "echo", 1, 1, t0))
    assert [a.state for a in alerts.evaluate(t0 + 6)] == ["firing"]
    assert alerts.evaluate(t0 + 7) == []
    alerts.accelerate_on_started(RequestStarted("r1", "echo", "echo", "key-1", 1, 7, t0 + 7))
    assert alerts.evaluate(t0 + 8) == []  # clear, but not for `quiet` seconds yet
    assert [a.state for a in alerts.evaluate(t0 + 11)] == ["resolved"]
    alerts.accelerate_on_queued(RequestQueued("r2", "echo", "echo", 1, 1, t0 + 11))
    assert [a.state for a in alerts.evaluate(t0 + 17)] == ["firing"]
    alerts.close()


def test_key_rejection_alerts_per_key_and_recovers_on_success():
    alerts = AlertManager([KeyRejected()], [], quiet=0)
    t = time.monotonic()
    alerts.accelerate_on_retried(RequestRetried("r1", "echo", "key-2", 1, "auth", 401, 0.0, t))
    fired = alerts.active
    assert [(a.rule, a.subject) for a in fired] == [("key_rejected", "echo/key-2")]
    alerts.accelerate_on_finished(_finished("r2", Outcome.SUCCESS, t + 1, key="key-2"))
    assert [a.state for a in alerts.evaluate(t + 1)] == ["resolved"]
    alerts.close()


def test_rate_limited_share_and_error_rate_need_enough_traffic():
    alerts = AlertManager([RateLimitShare(threshold=0.25, min_attempts=20),
                           ErrorRate(threshold=0.1, min_requests=20)], [], quiet=0)
    t = time.monotonic()
    for i in range(10):
        alerts.accelerate_on_started(RequestStarted(f"r{i}", "echo", "echo", "key-1", 1, 0, t))
        alerts.accelerate_on_retried(RequestRetried(f"r{i}", "echo", "key-1", 1, "rate_limited",
                                                    429, 0.1, t))
    assert alerts.evaluate(t) == []  # 10 attempts: too few to judge
    for i in range(10, 30):
        alerts.accelerate_on_started(RequestStarted(f"r{i}", "echo", "echo", "key-1", 1, 0, t))
        alerts.accelerate_on_finished(_finished(f"r{i}", Outcome.ERROR if i % 4 == 0 else
                                                Outcome.SUCCESS, t, error_class="transient"))
    fired = {a.rule: a for a in alerts.evaluate(t)}
    assert fired["rate_limited_share"].value == pytest.approx(10 / 30)
    assert fired["error_rate"].value == pytest.approx(5 / 20)
    # Outside the window the shares no longer count.
    assert {a.state for a in alerts.evaluate(t + 61)} == {"resolved"}
    alerts.close()


def test_budget_threshold_reads_its_source():
    spent = [10.0]
    alerts = AlertManager([BudgetThreshold(lambda: (spent[0], 100.0), share=0.8)], [], quiet=0)
    assert alerts.evaluate() == []
    spent[0] = 85.0
    [a] = alerts.evaluate()
    assert a.rule == "budget" and a.value == pytest.approx(0.85) and "85" in a.message
    alerts.close()


def test_log_and_command_notifiers(tmp_path, caplog):
    out = tmp_path / "alerts.txt"
    script = ("import os, sys, json; a = json.load(sys.stdin); "
              f"open({str(out)!r}, 'a').write(os.environ['ALERT_STATE'] + ' ' + a['rule'] + "
              "' ' + os.environ['ALERT_SUBJECT'] + chr(10))")
    alerts = AlertManager([QueueAge(max_age=1)],
                          [LogNotifier(), CommandNotifier([sys.executable, "-c", script])], quiet=0)
    t = time.monotonic()
    with caplog.at_level(logging.INFO, logger="ipfs_accelerate.alerts"):
        alerts.start()
        alerts.accelerate_on_queued(RequestQueued("r1", "echo", "echo", 1, 1, t - 5))
        alerts.evaluate(t)
        alerts.accelerate_on_started(RequestStarted("r1", "echo", "echo", "k", 1, 5, t))
        alerts.evaluate(t + 1)
        alerts.close()
    assert out.read_text().splitlines() == ["firing queue_age queue", "resolved queue_age queue"]
    lines = [r.getMessage() for r in caplog.records if r.name == "ipfs_accelerate.alerts"]
    assert lines[0].startswith("[FIRING] ipfs-accelerate queue_age (warning) queue: the oldest")
    assert lines[1].startswith("[RESOLVED]")


def test_a_failing_notifier_does_not_silence_the_others(receiver, caplog):
    broken = WebhookNotifier("http://127.0.0.1:9/hook", timeout=2)  # nothing listens there
    alerts = AlertManager([QueueAge(max_age=1)], [broken, WebhookNotifier(receiver.server.url)],
                          quiet=0)
    alerts.start()
    t = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ipfs_accelerate.alerts"):
        alerts.accelerate_on_queued(RequestQueued("r1", "echo", "echo", 1, 1, t - 5))
        alerts.evaluate(t)
        alerts.close()
    assert receiver.wait(1)[0] == {"text": "[FIRING] ipfs-accelerate queue_age (warning) queue: "
                                           "the oldest queued request has waited 5 s"}
    assert any("webhook to 127.0.0.1 failed" in r.getMessage() for r in caplog.records)
    assert "/hook" not in repr(broken)


def test_bad_notifier_settings_are_named():
    with pytest.raises(ValueError, match="webhook url"):
        WebhookNotifier("ftp://x")
    with pytest.raises(ValueError, match="command"):
        CommandNotifier("notify-send")
    with pytest.raises(ValueError, match="interval"):
        AlertManager(interval=0)


def test_make_observer_hook_builds_a_manager_from_options(receiver):
    m = alerts_plugin.accelerate_make_observer(
        name="alerts", options={"webhook": receiver.server.url, "error_rate": 0.5, "quiet": 0},
        config=ClientConfig())
    assert isinstance(m, AlertManager)
    assert {r.name for r in m.rules} >= {"breaker_open", "key_rejected", "error_rate", "queue_age"}
    assert next(r for r in m.rules if r.name == "error_rate").threshold == 0.5
    assert alerts_plugin.accelerate_make_observer(name="otel", options={}, config=None) is None
    m.close()
