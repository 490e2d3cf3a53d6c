"""Redis unreachable at start, failing mid-run (fallback), coming back (recovery)."""

from __future__ import annotations

import logging
import time

import pytest

from ipfs_accelerate_py.config import BreakerPolicy
from ipfs_accelerate_redis import RedisStatePlugin, RedisStateStore, RedisStateWarning, RedisUnavailableError
from ipfs_accelerate_redis.health import redact_url


def _wait_until_recovered(store: RedisStateStore) -> None:
    end = time.monotonic() + 10
    while store.degraded and time.monotonic() < end:
        time.sleep(0.01)
    assert not store.degraded


def test_unreachable_at_start_names_the_url_without_password(own_redis) -> None:
    port = own_redis.port
    own_redis.stop()
    url = f"redis://user:s3cret-pw@127.0.0.1:{port}/0"
    with pytest.raises(RedisUnavailableError) as info:
        RedisStateStore(url)
    msg = str(info.value)
    assert f"redis://127.0.0.1:{port}/0" in msg and "s3cret-pw" not in msg
    assert "s3cret-pw" not in msg and "s3cret-pw" not in repr(info.value)
    assert "s3cret-pw" not in repr(RedisStatePlugin(url))


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:1/2") == "redis://h:1/2"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    assert redact_url("rediss://u:p@[::1]:6380/0?password=x") == "rediss://[::1]:6380/0"


def test_falls_back_then_recovers(own_redis, caplog) -> None:
    store = RedisStateStore(own_redis.url, retry_interval=0.1, refresh=0.0, socket_timeout=5.0)
    lim = store.limiter("echo/k", 60.0, None, 1.0, time.monotonic())  # 1/s
    brk = store.breaker("echo@x", BreakerPolicy(), None)
    ctr = store.counter("done")
    assert lim.acquire(0, time.monotonic()) and ctr.incr() == 1
    own_redis.kill()
    with caplog.at_level(logging.WARNING, "ipfs_accelerate.redis"), \
            pytest.warns(RedisStateWarning, match="unreachable"):
        time.sleep(0.15)
        # The local limiter takes over: same rate, its own (full) bucket.
        assert lim.acquire(0, time.monotonic())
        assert store.degraded and lim.degraded
        assert lim.wait_time(0, time.monotonic()) > 0
        assert brk.can_dispatch(time.monotonic()) and brk.state(time.monotonic()) == "closed"
        brk.record_success(time.monotonic(), brk.on_dispatch(time.monotonic()))
        assert ctr.incr() == 2  # kept locally
        own_redis.start()  # an empty server: the state was not persisted
        _wait_until_recovered(store)  # the background probe finds Redis again
        assert lim.wait_time(0, time.monotonic() + 1) == 0.0
        assert ctr.value() == 1  # the pending increment reached the new server (it restarted empty)
    assert store.health.outages == 1 and store.health.recoveries == 1
    store.health._prober.join(5)
    assert not store.health._prober.is_alive()  # the probe thread ends once Redis is back
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert lim.acquire(0, time.monotonic())
    store.close()


def test_fail_closed_admits_nothing_while_down(own_redis) -> None:
    store = RedisStateStore(own_redis.url, fail_closed=True, retry_interval=0.2,
                            socket_timeout=5.0)
    lim = store.limiter("echo/k", None, None, None, time.monotonic())
    assert lim.acquire(0, time.monotonic())
    own_redis.kill()
    with pytest.warns(RedisStateWarning, match="fail-closed"):
        assert not lim.acquire(0, time.monotonic())
    assert lim.wait_time(0, time.monotonic()) > 0
    assert lim.headroom(time.monotonic()) == 0.0
    own_redis.start()
    _wait_until_recovered(store)
    assert lim.wait_time(0, time.monotonic()) == 0.0
    assert lim.acquire(0, time.monotonic())
    store.close()


def test_a_hung_redis_costs_one_timeout_then_no_more_calls(own_redis) -> None:
    """SIGSTOP: connections hang instead of being refused.  One call waits out the socket
    timeout; afterwards the pipeline's calls answer locally without touching Redis while a
    background thread probes, and SIGCONT brings the shared limits back."""
    import os
    import signal

    store = RedisStateStore(own_redis.url, socket_timeout=0.3, retry_interval=0.1)
    lim = store.limiter("echo/k", 60000.0, None, None, time.monotonic())
    assert lim.acquire(0, time.monotonic())
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        with pytest.warns(RedisStateWarning):
            assert lim.acquire(0, time.monotonic())  # waits 0.3 s, then local
        script = store.limiter_script
        sent: list[int] = []

        def counting(*args, **kwargs):
            sent.append(1)
            return script(*args, **kwargs)

        store.limiter_script = counting
        for _ in range(50):  # the pipeline's calls no longer go to the hung server
            lim.acquire(0, time.monotonic())
            lim.wait_time(0, time.monotonic())
            lim.snapshot(time.monotonic())
        assert sent == [] and store.degraded
        store.limiter_script = script
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    _wait_until_recovered(store)
    assert lim.acquire(0, time.monotonic())
    store.close()
