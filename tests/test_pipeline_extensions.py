"""Per-client extensions: the state store and observers a ClientConfig names, resolved
through hooks; nothing installed changes a client that does not name it."""

from __future__ import annotations

import logging

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, hookimpl
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.state import InMemoryStateStore


class Seen:
    """An observer: collects the events it is handed."""

    def __init__(self):
        self.events = []

    def accelerate_on_queued(self, event):
        self.events.append(("queued", event.request_id))

    def accelerate_on_finished(self, event):
        self.events.append(("finished", event.request_id))


class TrackedStore(InMemoryStateStore):
    def __init__(self):
        super().__init__()
        self.closed = 0

    def close(self):
        self.closed += 1


class Extensions:
    """A plugin answering the ``test://`` store scheme and the ``seen`` observer name."""

    def __init__(self):
        self.stores = []
        self.observers = []

    @hookimpl
    def accelerate_make_state_store(self, url, config):
        if url is None or not url.startswith("test://"):
            return None
        store = TrackedStore()
        self.stores.append(store)
        return store

    @hookimpl
    def accelerate_make_observer(self, name, options, config):
        if name != "seen":
            return None
        obs = Seen()
        obs.options = options
        self.observers.append(obs)
        return obs


def make(pm, srv, **cfg):
    return Client([BackendConfig("echo", keys=["test-key-1"], base_url=srv.url)],
                  ClientConfig(**cfg), plugin_manager=pm)


def test_two_clients_in_one_process_have_their_own_observers(pm, echo_server):
    a, b = Seen(), Seen()
    with make(pm, echo_server, observers=(a,)) as ca, make(pm, echo_server, observers=[b]) as cb:
        ra = ca.call("echo", "echo", {"n": 1})
        rb = cb.call("echo", "echo", {"n": 2})
    assert a.events == [("queued", ra.request_id), ("finished", ra.request_id)]
    assert b.events == [("queued", rb.request_id), ("finished", rb.request_id)]


def test_observers_by_name_with_options_through_the_hook(pm, echo_server):
    ext = Extensions()
    pm.add_plugin(ext, name="ext")
    with make(pm, echo_server, observers=("seen", ("seen", {"level": 2}))) as c:
        res = c.call("echo", "echo", {"n": 1})
    first, second = ext.observers
    assert first.options == {} and second.options == {"level": 2}
    assert first.events == second.events == [("queued", res.request_id),
                                             ("finished", res.request_id)]


def test_unknown_observer_name_is_a_config_error(pm, echo_server):
    with pytest.raises(ConfigError, match="no-such-observer"):
        make(pm, echo_server, observers=("no-such-observer",))


def test_environment_names_observers_and_the_store(pm, echo_server, monkeypatch):
    ext = Extensions()
    pm.add_plugin(ext, name="ext")
    monkeypatch.setenv("IPFS_ACCELERATE_OBSERVERS", "seen")
    monkeypatch.setenv("IPFS_ACCELERATE_STATE_STORE", "test://env")
    with make(pm, echo_server) as c:
        c.call("echo", "echo", {"n": 1})
    assert len(ext.observers) == 1 and len(ext.observers[0].events) == 2
    assert len(ext.stores) == 1 and ext.stores[0].closed == 1


def test_add_observer_after_construction(pm, echo_server):
    late = Seen()
    with make(pm, echo_server) as c:
        c.call("echo", "echo", {"n": 1})
        c.add_observer(late)
        res = c.call("echo", "echo", {"n": 2})
    assert late.events == [("queued", res.request_id), ("finished", res.request_id)]
    with pytest.raises(TypeError, match="observer methods"):
        c.add_observer(object())


def test_a_monitoring_plugin_registered_after_the_client_is_not_ignored(pm, echo_server):
    seen = []

    class Late:
        @hookimpl
        def accelerate_on_finished(self, event):
            seen.append(event.request_id)

    with make(pm, echo_server) as c:
        c.call("echo", "echo", {"n": 1})
        pm.add_plugin(Late(), name="late")
        res = c.call("echo", "echo", {"n": 2})
    assert seen == [res.request_id]


def test_a_raising_observer_is_logged_and_ignored(pm, echo_server, caplog):
    class Broken:
        def accelerate_on_finished(self, event):
            raise RuntimeError("exporter down")

    with caplog.at_level(logging.WARNING, logger="ipfs_accelerate"):
        with make(pm, echo_server, observers=(Broken(),)) as c:
            assert c.call("echo", "echo", {"n": 1}).text == '{"n": 1}'
    assert "exporter down" in caplog.text and "Broken" in caplog.text


def test_the_client_closes_only_the_store_it_made(pm, echo_server):
    ext = Extensions()
    pm.add_plugin(ext, name="ext")
    shared = TrackedStore()
    with make(pm, echo_server, state_store=shared) as c1, \
            make(pm, echo_server, state_store=shared) as c2:
        c1.call("echo", "echo", {"n": 1})
        c2.call("echo", "echo", {"n": 2})
    assert shared.closed == 0  # lent to both: its owner closes it
    with make(pm, echo_server, state_store="test://mine") as c3:
        c3.call("echo", "echo", {"n": 3})
    assert [s.closed for s in ext.stores] == [1]


def test_two_clients_can_use_different_stores(pm, echo_server):
    ext = Extensions()
    pm.add_plugin(ext, name="ext")
    with make(pm, echo_server, state_store="test://a") as a, make(pm, echo_server) as b:
        a.call("echo", "echo", {"n": 1})
        b.call("echo", "echo", {"n": 2})
        assert a._store is ext.stores[0] and type(b._store) is InMemoryStateStore


def test_an_unanswered_store_scheme_is_a_config_error(pm, echo_server):
    with pytest.raises(ConfigError, match="nosuch://x"):
        make(pm, echo_server, state_store="nosuch://x")


@pytest.mark.parametrize("value,match", [("localhost:6379", "URL"), (42, "not a state store")])
def test_a_bad_state_store_setting_names_the_field(value, match):
    with pytest.raises(ValueError, match=match):
        ClientConfig(state_store=value)


def test_a_retried_event_comes_before_the_next_attempts_started(pm, echo_server):
    # The job used to be back in the queue before its "retried" went out, so another
    # worker could start attempt 2 first (a tracer then closed attempt 1 unmarked).  The
    # observer below holds "retried" until attempt 2 starts, or half a second: attempt 2
    # must not start meanwhile.
    import threading

    from ipfs_accelerate_py import RetryPolicy
    from ipfs_accelerate_py.server import ServerResponse

    order: list[tuple[str, int]] = []
    second_started = threading.Event()

    class Ordered:
        def accelerate_on_started(self, event):
            order.append(("started", event.attempt))
            if event.attempt == 2:
                second_started.set()

        def accelerate_on_retried(self, event):
            second_started.wait(0.5)
            order.append(("retried", event.attempt))

    echo_server.script(ServerResponse.json({"error": "down"}, 503))
    with make(pm, echo_server, max_concurrency=2, observers=(Ordered(),),
              retry=RetryPolicy(base_delay=0.001, max_delay=0.001)) as c:
        assert c.submit("echo", "echo", {"n": 1}).result(30).attempts == 2
    assert order == [("started", 1), ("retried", 1), ("started", 2)]
