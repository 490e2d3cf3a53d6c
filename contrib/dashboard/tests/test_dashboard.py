"""The dashboard: served data, token and loopback rules, message size, and the page itself
in headless Chromium against a running simulated workload."""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request
from ipfs_accelerate_py.config import BreakerPolicy, RetryPolicy
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.events import BreakerChanged
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_sim import SimConfig, Simulator

from ipfs_accelerate_dashboard import DashboardRecorder, serve_dashboard
from ipfs_accelerate_dashboard import plugin as dashboard_plugin
from ipfs_accelerate_dashboard.state import DashboardState

sys.path.insert(0, str(Path(__file__).parent))
from cdp import Browser  # noqa: E402

DOCS = Path(__file__).resolve().parents[3] / "docs"
N_REQUESTS = 600


class Workload:
    """A client over three keys against the simulator (rate limits, errors, an outage),
    fed by a thread that submits a bounded number of requests at a steady pace."""

    def __init__(self) -> None:
        self.recorder = DashboardRecorder()
        pm = PluginManager(disabled={"prometheus"})
        pm.add_plugin(self.recorder, name="dashboard-recorder")
        self.sim = Simulator(SimConfig(rps=15, burst=4, latency=0.02, jitter=0.02, error_rate=0.05,
                                       outages=[(2.0, 3.0)], seed=5, backends=["openai"]))
        self.sim.__enter__()
        keys = [ApiKey(secret=f"test-key-{i}", name=f"key-{i}") for i in (1, 2, 3)]
        self.client = Client([BackendConfig("openai", keys=keys, max_concurrent_per_key=4,
                                            base_url=self.sim.base_url("openai") + "/v1")],
                             ClientConfig(max_concurrency=12, default_deadline=60,
                                          retry=RetryPolicy(base_delay=0.05, max_delay=0.5,
                                                            max_attempts=8),
                                          breaker=BreakerPolicy(open_interval=0.25,
                                                                max_open_interval=0.5)),
                             plugin_manager=pm)
        self.progress = {"done": 0, "total": N_REQUESTS, "failed": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _done(self, fut) -> None:
        with self._lock:
            self.progress["done"] += 1
            self.progress["failed"] += fut.exception() is not None

    def _run(self) -> None:
        for i in range(N_REQUESTS):
            if self._stop.wait(0.03):
                return
            payload = {"model": "gpt-4o-mini", "max_tokens": 8,
                       "messages": [{"role": "user", "content": f"hello {i}"}]}
            fut = self.client.submit(Request(operation="chat", payload=payload, backend="openai"),
                                     block=True)
            fut.add_done_callback(self._done)

    def snapshot_progress(self) -> dict[str, int]:
        with self._lock:
            return dict(self.progress)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close(wait=False)
        self.sim.__exit__(None, None, None)


@pytest.fixture
def workload():
    w = Workload()
    yield w
    w.close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_page_in_headless_chromium_shows_live_numbers(workload):
    dash = serve_dashboard(workload.client, 0, recorder=workload.recorder,
                           progress=workload.snapshot_progress, interval=0.5)
    try:
        with Browser() as browser:
            browser.open(dash.url)
            browser.wait_for("document.getElementById('status').dataset.state === 'live'")
            first = browser.wait_for(
                "(function(){var v=+document.getElementById('total-ok').textContent.replace(/,/g,'');"
                "return v > 0 ? v : 0;})()", timeout=30)
            # Live: the number keeps growing while the page stays open, without a reload.
            later = browser.wait_for(
                f"(function(){{var v=+document.getElementById('total-ok').textContent.replace(/,/g,'');"
                f"return v > {first} ? v : 0;}})()", timeout=30)
            stats_ok = workload.client.stats().total("success")
            assert first < later <= stats_ok
            # Charts drawn from several points; tables filled.
            points = browser.wait_for(
                "(function(){var c=document.getElementById('chart-throughput');"
                "var n=+c.getAttribute('data-points');return n >= 3 ? n : 0;})()")
            assert points >= 3
            for chart in ("chart-retries", "chart-latency", "chart-queue"):
                assert int(browser.evaluate(
                    f"document.getElementById('{chart}').getAttribute('data-values')")) > 0
            keys = browser.evaluate(
                "Array.from(document.querySelectorAll('#keys tbody tr')).map(r => r.dataset.key)")
            assert keys == ["key-1", "key-2", "key-3"]
            headroom = browser.evaluate(
                "document.querySelector('#keys tbody tr td[data-field=headroom]').textContent")
            assert re.search(r"\d+%", headroom)
            backend_row = browser.evaluate(
                "document.querySelector('#backends tbody tr').textContent")
            assert "openai" in backend_row
            # The simulated outage (2-3 s) opens the breaker: its history shows it.
            history = browser.wait_for(
                "(function(){var t=document.querySelector('#breakers tbody').textContent;"
                "return t.indexOf('open') >= 0 ? t : '';})()", timeout=30)
            assert "closed" in history
            progress = browser.wait_for(
                "document.getElementById('progress-box').hidden ? '' : "
                "document.getElementById('progress-text').textContent")
            assert re.match(rf"\d+ / {N_REQUESTS} done", progress)
            shot = Path(os.environ.get("DASHBOARD_SCREENSHOT", "")) if os.environ.get(
                "DASHBOARD_SCREENSHOT") else None
            if shot is not None:  # regenerate docs/dashboard.png
                time.sleep(3)
                browser.screenshot(shot)
    finally:
        dash.close()


def test_binds_loopback_by_default_and_elsewhere_only_with_a_token(workload):
    with pytest.raises(ConfigError, match="needs a token"):
        serve_dashboard(workload.client, 0, host="0.0.0.0")
    with serve_dashboard(workload.client, 0) as dash:
        assert dash.host == "127.0.0.1"
        assert "this machine only" in dash.notice
        status, body = _get(dash.url + "api/state")
        assert status == 200 and "current" in json.loads(body)


def test_token_guards_the_data_endpoints(workload):
    with serve_dashboard(workload.client, 0, token="s3cret-token") as dash:
        base = dash.url.split("?", 1)[0]
        assert _get(base + "api/state")[0] == 401
        assert _get(base + "api/state?token=wrong")[0] == 401
        assert _get(base + "api/state?token=s3cret-token")[0] == 200
        assert _get(base + "api/state", {"Authorization": "Bearer s3cret-token"})[0] == 200
        assert _get(base + "events")[0] == 401
        assert _get(base)[0] == 200  # the page itself holds no data
        assert dash.url.endswith("?token=s3cret-token")


def test_every_asset_is_served_by_the_package(workload):
    with serve_dashboard(workload.client, 0) as dash:
        status, html = _get(dash.url)
        assert status == 200
        refs = re.findall(rb'(?:src|href)="([^"]+)"', html)
        assert refs, "the page links its script and style"
        for ref in refs:
            assert not re.match(rb"[a-z]+:|//", ref), ref  # no CDN, no absolute URL
            assert _get(dash.url + ref.decode())[0] == 200
        _, js = _get(dash.url + "app.js")
        assert b"http://" not in js and b"https://" not in js


def test_stream_sends_history_first_then_small_updates(workload):
    with serve_dashboard(workload.client, 0, interval=0.2) as dash:
        parts = urlsplit(dash.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", "/events")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        events: list[tuple[str, bytes]] = []
        name = None
        while len(events) < 6:
            line = resp.fp.readline()
            if line.startswith(b"event: "):
                name = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                events.append((name, line[6:]))
        conn.close()
    assert events[0][0] == "full"
    full = json.loads(events[0][1])
    assert {"history", "current", "breakers"} <= set(full)
    updates = [json.loads(d) for n, d in events[1:] if n == "update"]
    assert len(updates) == 5
    assert all(len(d) < 4096 for n, d in events[1:])  # three keys: well under 4 KB per second
    stamps = [u["point"]["t"] for u in updates]
    assert stamps == sorted(stamps)
    assert [k["key_id"] for k in updates[-1]["current"]["keys"]] == ["key-1", "key-2", "key-3"]
    assert all(b"test-key-" not in d for _, d in events)  # never a key, only its id


def test_recorder_keeps_every_breaker_transition_and_the_oldest_wait():
    rec = DashboardRecorder()
    t0 = time.monotonic()
    for old, new in (("closed", "open"), ("open", "half_open"), ("half_open", "closed")):
        rec.accelerate_on_breaker_changed(BreakerChanged("openai@http://x", old, new, t0))
    hist = rec.transitions()
    assert [(h["from"], h["to"]) for h in hist] == [
        ("half_open", "closed"), ("open", "half_open"), ("closed", "open")]
    assert all(h["backend"] == "openai" for h in hist)
    assert rec.last_breaker_state("openai") == "closed"

    class Ev:
        def __init__(self, rid, t):
            self.request_id, self.time = rid, t

    rec.accelerate_on_queued(Ev("a", t0 - 5))
    rec.accelerate_on_queued(Ev("b", t0 - 1))
    assert rec.oldest_waiting(t0) == pytest.approx(5)
    rec.accelerate_on_started(Ev("a", t0))
    assert rec.oldest_waiting(t0) == pytest.approx(1)


def test_progress_eta_from_the_recent_rate():
    class FakeStats:  # only the progress part is under test here
        backends: dict = {}
        keys: dict = {}
        queue_depth = in_flight = 0

        def to_dict(self):
            return {}

    class C:
        def stats(self):
            return FakeStats()

    done = {"done": 0, "total": 100, "failed": 0}
    state = DashboardState(C(), DashboardRecorder(), progress=lambda: done)
    assert state.sample()["current"]["progress"]["eta"] is None  # no rate yet
    time.sleep(0.2)
    done["done"] = 50
    p = state.sample()["current"]["progress"]
    assert p["rate"] > 0 and p["eta"] == pytest.approx(50 / p["rate"], abs=0.1)  # both rounded
    done["done"] = 100
    assert state.sample()["current"]["progress"]["eta"] == 0.0


def test_make_observer_hook_builds_the_recorder_by_name():
    obs = dashboard_plugin.accelerate_make_observer(name="dashboard", options={"latency_window": 5},
                                                    config=ClientConfig())
    assert isinstance(obs, DashboardRecorder) and obs.latency_window == 5
    assert dashboard_plugin.accelerate_make_observer(name="otel", options={},
                                                     config=ClientConfig()) is None


def test_command_line_options_start_the_page_and_say_where(workload, capsys):
    import argparse

    from ipfs_accelerate_dashboard.cli import add_options, start_from_args

    parser = argparse.ArgumentParser()
    add_options(parser)
    assert start_from_args(workload.client, parser.parse_args([])) is None

    class Progress:  # the command line's progress line has these attributes
        done, total, failed = 5, 10, 1

    dash = start_from_args(workload.client, parser.parse_args(["--dashboard", "0"]), Progress())
    try:
        err = capsys.readouterr().err
        assert err.startswith(f"dashboard: http://127.0.0.1:{dash.port}/ (bound to 127.0.0.1")
        state = json.loads(_get(dash.url + "api/state")[1])
        assert state["current"]["progress"]["done"] == 5
    finally:
        dash.close()
    with pytest.raises(ConfigError, match="needs a token"):
        start_from_args(workload.client, parser.parse_args(["--dashboard", "0",
                                                            "--dashboard-host", "0.0.0.0"]))
    with pytest.raises(ConfigError, match="--dashboard"):
        start_from_args(workload.client, parser.parse_args(["--dashboard", "70000"]))


def test_recorder_under_threads_while_it_is_read():
    from ipfs_accelerate_py.events import Outcome, RequestFinished, RequestQueued, RequestStarted

    rec = DashboardRecorder(latency_window=3600)
    threads, per_thread = 8, 1500
    stop = threading.Event()
    reads: list[object] = []

    def reader() -> None:
        while not stop.is_set():
            reads.append((rec.latency_percentiles(), rec.oldest_waiting(), rec.transitions(5)))

    def work(n: int) -> None:
        for i in range(per_thread):
            rid, t = f"{n}-{i}", time.monotonic()
            rec.accelerate_on_queued(RequestQueued(rid, "echo", "echo", 1, 1, t))
            rec.accelerate_on_started(RequestStarted(rid, "echo", "echo", "key-1", 1, 0, t))
            rec.accelerate_on_finished(RequestFinished(rid, "echo", "echo", Outcome.SUCCESS,
                                                       (i % 100) / 1000, "key-1", 1, time=t))
            if i % 50 == 0:
                rec.accelerate_on_breaker_changed(BreakerChanged(f"b{n}@x", "closed", "open", t))

    r = threading.Thread(target=reader)
    r.start()
    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    stop.set()
    r.join(10)
    assert reads  # the reader ran alongside
    assert rec.oldest_waiting() is None  # every queued request started
    pct = rec.latency_percentiles()
    assert pct["p50"] == pytest.approx(0.049) and pct["p99"] == pytest.approx(0.098)
    assert rec.version == threads * (per_thread // 50)
    assert len(rec.transitions(1000)) == 200  # bounded history


def test_serve_dashboard_hook_returns_a_running_page(workload):
    dash = dashboard_plugin.accelerate_serve_dashboard(client=workload.client, port=0,
                                                       host="127.0.0.1", token=None)
    try:
        assert _get(dash.url + "api/state")[0] == 200
    finally:
        dash.close()


def test_a_port_in_use_is_a_clear_error(workload):
    with serve_dashboard(workload.client, 0) as dash:
        with pytest.raises(ConfigError, match=rf"cannot serve the dashboard on 127.0.0.1:{dash.port}"):
            serve_dashboard(workload.client, dash.port)


def test_without_events_the_breaker_history_is_sampled():
    class Snap:
        def __init__(self, state):
            self.backends = {"openai": {"breaker": state, "requests": 0, "outcomes": {},
                                        "retries": 0, "rate_limited": 0, "latency_p50": None,
                                        "latency_p95": None, "latency_p99": None}}
            self.keys, self.queue_depth, self.in_flight = {}, 0, 0

        def to_dict(self):
            return {}

    class C:
        state = "closed"

        def stats(self):
            return Snap(self.state)

    client, rec = C(), DashboardRecorder()
    state = DashboardState(client, rec)
    state.sample()
    client.state = "open"
    state.sample()
    assert [(h["from"], h["to"], h["source"]) for h in rec.transitions()] == [
        ("closed", "open", "sampled"), ("-", "closed", "initial")]
    # Once events arrive, they alone write the history.
    rec.accelerate_on_breaker_changed(BreakerChanged("openai@x", "open", "half_open", time.monotonic()))
    client.state = "closed"  # the sample disagrees; the event's word stands
    state.sample()
    assert [(h["to"], h["source"]) for h in rec.transitions()][0] == ("half_open", "event")


def test_the_token_never_reaches_a_log_line(workload, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="ipfs_accelerate.dashboard"):
        with serve_dashboard(workload.client, 0, token="s3cret-token") as dash:
            assert _get(dash.url + "&x=1")[0] == 200
            base = dash.url.split("?", 1)[0]
            assert _get(base + "api/state?token=s3cret-token")[0] == 200
            assert _get(base + "api/state?token=s3cret-wrong")[0] == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/state?token=***" in logged
    assert "s3cret" not in logged
