"""While Redis is away, the processes sharing a key together stay within its quota: each
falls back to 1/N of the rates, N being the processes last seen alive (heartbeats)."""

from __future__ import annotations

import time
import warnings

import pytest

from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_redis import RedisStateStore


def test_processes_are_counted_by_heartbeat(redis_url: str, namespace: str) -> None:
    stores = [RedisStateStore(redis_url, namespace=namespace, heartbeat_interval=0.05)
              for _ in range(3)]
    try:
        assert [s.heartbeat() for s in stores] == [3, 3, 3]
        assert all(s.fallback_share() == pytest.approx(1 / 3) for s in stores)
        stores.pop().close()  # leaves at once
        assert stores[0].heartbeat() == 2
        # a process that stops beating (killed) is forgotten after three intervals
        silent = stores.pop()
        silent._closed.set()
        silent._heart.join(5)
        end = time.monotonic() + 10
        while stores[0].heartbeat() != 1 and time.monotonic() < end:
            time.sleep(0.02)
        assert stores[0].peers == 1 and stores[0].fallback_share() == 1.0
        silent.health.close()
        silent.redis.close()
    finally:
        for s in stores:
            s.close()


def test_an_explicit_share_wins_and_is_validated(redis_url: str, namespace: str) -> None:
    a = RedisStateStore(redis_url, namespace=namespace, local_share=0.5)
    b = RedisStateStore(redis_url, namespace=namespace)
    try:
        assert a.heartbeat() == 2 and a.fallback_share() == 0.5 and b.fallback_share() == 0.5
    finally:
        a.close()
        b.close()
    for bad in (0, 1.5, -1):
        with pytest.raises(ConfigError, match="local_share"):
            RedisStateStore(redis_url, local_share=bad)
    with pytest.raises(ConfigError, match="heartbeat_interval"):
        RedisStateStore(redis_url, heartbeat_interval=0)


def test_three_processes_fall_back_to_a_third_each(own_redis) -> None:
    """Three stores (as three processes) share a key of 60 requests a minute and a burst
    of 3; Redis dies: together they admit what the key allows, not three times that."""
    stores = [RedisStateStore(own_redis.url, retry_interval=5.0, refresh=0.0,
                              heartbeat_interval=0.05) for _ in range(3)]
    try:
        for s in stores:
            s.heartbeat()
        now = time.monotonic()
        limiters = [s.limiter("openai/k1", 60.0, None, 3.0, now) for s in stores]
        own_redis.kill()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.monotonic()
            admitted = 0
            for lim in limiters:  # each process drains all it may, at one instant
                while lim.acquire(0, t0):
                    admitted += 1
                    assert admitted < 100
            assert all(lim.degraded for lim in limiters)
            # a burst of 3 for the key in all: one each, not 3 each
            assert admitted == 3
            # over the next 3 simulated seconds the key refills 3 more in all
            later = t0 + 3.0
            for lim in limiters:
                while lim.acquire(0, later):
                    admitted += 1
            assert admitted <= 3 + 3 + 1
            assert limiters[0]._local.requests_per_minute == pytest.approx(20.0)  # the fallback
    finally:
        for s in stores:
            s.close()
