"""The Redis :class:`~ipfs_accelerate_py.state.StateStore`."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ipfs_accelerate_py.breaker import TransitionCallback
from ipfs_accelerate_py.config import BreakerPolicy
from ipfs_accelerate_py.errors import AccelerateError, ConfigError
from ipfs_accelerate_py.redaction import redact
from ipfs_accelerate_py.state import StateStore

from . import lua
from .breaker import RedisBreaker
from .health import Health, redact_url
from .limiter import RedisLimiter

URL_ENV = "IPFS_ACCELERATE_REDIS_URL"
FAIL_CLOSED_ENV = "IPFS_ACCELERATE_REDIS_FAIL_CLOSED"
NAMESPACE_ENV = "IPFS_ACCELERATE_REDIS_NAMESPACE"

#: Errors that mean "Redis is not answering" (fall back), as opposed to a bug (raise).
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


# KEYS: members zset.  ARGV: member, window ms.  Stamp this member with Redis's clock (one
# clock for every host), forget members silent longer than the window, count the rest.
MEMBERS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"""


class RedisUnavailableError(AccelerateError):
    """Redis could not be reached when the store was created."""


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


class RedisCounter:
    """INCRBY/DECRBY on one Redis key.  While Redis is down the changes are kept locally
    and added on the next successful call, so none is lost."""

    def __init__(self, store: RedisStateStore, redis_key: str) -> None:
        self._store = store
        self._key = redis_key
        self._pending = 0
        self._last = 0
        self._lock = threading.Lock()

    def _add(self, n: int) -> int:
        store = self._store
        with self._lock:
            delta = self._pending + n
            if store.health.usable():
                try:
                    value = int(store.redis.incrby(self._key, delta))
                except store.down_errors as exc:
                    store.health.failed(exc, store.fallback_description)
                else:
                    store.health.succeeded()
                    self._pending = 0
                    self._last = value
                    return value
            self._pending = delta
            return self._last + self._pending

    def incr(self, n: int = 1) -> int:
        return self._add(n)

    def decr(self, n: int = 1) -> int:
        return self._add(-n)

    def value(self) -> int:
        if self._pending:
            return self._add(0)
        store = self._store
        if store.health.usable():
            try:
                raw = store.redis.get(self._key)
            except store.down_errors as exc:
                store.health.failed(exc, store.fallback_description)
            else:
                store.health.succeeded()
                self._last = int(raw or 0)
        return self._last

    def __repr__(self) -> str:
        return f"RedisCounter({self._key!r})"


class RedisStateStore(StateStore):
    """Limiter buckets, breakers and counters in Redis, shared by every process (on any
    host) that uses the same Redis and ``namespace``.

    :param url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``);
        default: the ``IPFS_ACCELERATE_REDIS_URL`` environment variable.
    :param client: an existing ``redis.Redis`` instead of a URL.
    :param namespace: prefix of every Redis key (separate quotas / test runs).
    :param fail_closed: while Redis is unreachable admit nothing (``wait_time`` answers
        a positive wait) instead of falling back to local limits.
    :param socket_timeout: seconds per Redis operation; the pipeline calls the store under
        its lock, so keep this small.
    :param retry_interval: while Redis is down, how often a background thread PINGs it
        (the pipeline's calls never wait on a dead or hung Redis meanwhile).
    :param refresh: how old a mirrored limiter / breaker state may be for the read-only
        questions (``wait_time``, ``can_dispatch``) before it is read again.
    :param ttl: seconds after its last change that an idle limiter or breaker is dropped.
    :param local_share: fraction of the configured rates used by the local fallback.
        Default (None): ``1/N``, N being the processes of this namespace last seen alive
        (each store sends a heartbeat every ``heartbeat_interval`` seconds; a process
        silent for three intervals no longer counts), so that together they stay within
        the quota while Redis is away.
    :param heartbeat_interval: seconds between heartbeats.

    Raises :class:`RedisUnavailableError` (naming the URL without its password) when Redis
    does not answer now.
    """

    down_errors = DOWN_ERRORS

    def __init__(self, url: str | None = None, *, client: redis.Redis | None = None,
                 namespace: str = "ipfs_accelerate", fail_closed: bool = False,
                 socket_timeout: float = 0.5, retry_interval: float = 1.0, refresh: float = 0.05,
                 ttl: float = 86_400.0, local_share: float | None = None,
                 heartbeat_interval: float = 2.0) -> None:
        if client is None:
            url = url or os.environ.get(URL_ENV)
            if not url:
                raise ConfigError("redis url", f"pass RedisStateStore(url) or set {URL_ENV}")
        if local_share is not None and not 0 < local_share <= 1:
            raise ConfigError("local_share", f"must be in (0, 1], got {local_share!r}")
        if not heartbeat_interval > 0:
            raise ConfigError("heartbeat_interval", f"must be > 0, got {heartbeat_interval!r}")
        if ttl <= 0 or refresh < 0 or retry_interval <= 0 or socket_timeout <= 0:
            raise ConfigError("redis store", "ttl, retry_interval and socket_timeout must be > 0 "
                              "and refresh >= 0")
        self.url_safe = redact_url(url) if url else repr(client)
        self.namespace = namespace
        self.fail_closed = fail_closed
        self.refresh = refresh
        self.ttl = ttl
        self.local_share = local_share
        self.heartbeat_interval = heartbeat_interval
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Processes of this namespace seen alive at the last heartbeat (this one included).
        self.peers = 1
        self.fallback_description = ("admitting nothing (fail-closed)" if fail_closed
                                     else "using local in-memory limits")
        if client is None:
            try:
                client = redis.Redis.from_url(
                    url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                    retry=Retry(NoBackoff(), 0), health_check_interval=0)
            except ValueError as exc:
                raise ConfigError("redis url", f"{self.url_safe}: {exc}") from None
        self.redis = client
        self.health = Health(self.url_safe, retry_interval, probe=client.ping)
        try:
            client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            client.close()
            raise RedisUnavailableError(
                f"cannot reach Redis at {self.url_safe}: {type(exc).__name__}: {exc}") from None
        self.limiter_script = client.register_script(lua.LIMITER)
        self.breaker_script = client.register_script(lua.BREAKER)
        self.members_script = client.register_script(MEMBERS_LUA)
        self._closed = threading.Event()
        self.heartbeat()
        self._heart = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                       name="ipfs-accelerate-redis-heartbeat")
        self._heart.start()
        self._lock = threading.Lock()
        self._limiters: dict[str, RedisLimiter] = {}
        self._breakers: dict[str, RedisBreaker] = {}
        self._counters: dict[str, RedisCounter] = {}

    @classmethod
    def from_env(cls, url: str | None = None, **options: Any) -> RedisStateStore:
        """A store configured by ``url`` (default ``IPFS_ACCELERATE_REDIS_URL``),
        ``IPFS_ACCELERATE_REDIS_FAIL_CLOSED`` and ``..._NAMESPACE``; keyword options
        override."""
        if FAIL_CLOSED_ENV in os.environ:
            options.setdefault("fail_closed", _truthy(os.environ[FAIL_CLOSED_ENV]))
        if os.environ.get(NAMESPACE_ENV):
            options.setdefault("namespace", os.environ[NAMESPACE_ENV])
        return cls(url or os.environ.get(URL_ENV), **options)

    def heartbeat(self) -> int:
        """Say this process is alive and count the live ones (one round trip); while Redis
        is down the last count stays."""
        try:
            n = self.members_script(keys=[self._k("members", "alive")],
                                    args=[self.member, int(self.heartbeat_interval * 3000)])
        except (redis.exceptions.RedisError, OSError):
            return self.peers
        self.peers = max(1, int(n))
        return self.peers

    def _heartbeat_loop(self) -> None:
        while not self._closed.wait(self.heartbeat_interval):
            self.heartbeat()

    def fallback_share(self) -> float:
        """The share of each rate this process uses while Redis is unreachable."""
        return self.local_share if self.local_share is not None else 1.0 / self.peers

    def _k(self, kind: str, name: str) -> str:
        # Names are public ids (``key-1a2b3c4d``, ``openai@https://host/v1``); the redactor
        # is a last guard so no credential ever becomes part of a Redis key name.
        return f"{self.namespace}:{kind}:{redact(name)}"

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and local state is used."""
        return not self.health.ok

    def limiter(self, scope: str, requests_per_minute: float | None,
                tokens_per_minute: float | None, burst: float | None, now: float) -> RedisLimiter:
        with self._lock:
            found = self._limiters.get(scope)
            if found is None:
                found = self._limiters[scope] = RedisLimiter(
                    self, self._k("limiter", scope), requests_per_minute, tokens_per_minute,
                    burst, now)
            return found

    def breaker(self, endpoint: str, policy: BreakerPolicy,
                on_transition: TransitionCallback | None = None) -> RedisBreaker:
        with self._lock:
            found = self._breakers.get(endpoint)
            if found is None:
                found = self._breakers[endpoint] = RedisBreaker(
                    self, self._k("breaker", endpoint), endpoint, policy, on_transition)
            return found

    def counter(self, name: str) -> RedisCounter:
        with self._lock:
            found = self._counters.get(name)
            if found is None:
                found = self._counters[name] = RedisCounter(self, self._k("counter", name))
            return found

    def budget_ledger(self) -> Any:
        """The shared ledger of budgets (:mod:`ipfs_accelerate_py.costs`): every process of
        this namespace with the same budget names shares their spend."""
        from .budget import RedisLedger

        return RedisLedger(self)

    def counters(self) -> dict[str, int]:
        """Every counter of this namespace in Redis (those of other processes included)."""
        prefix = self._k("counter", "")
        out: dict[str, int] = {}
        keys = list(self.redis.scan_iter(match=prefix + "*", count=500))
        if keys:
            for k, v in zip(keys, self.redis.mget(keys)):
                name = k.decode() if isinstance(k, bytes) else k
                out[name[len(prefix):]] = int(v or 0)
        return out

    def close(self) -> None:
        self._closed.set()
        self.health.close()
        if self.health.ok:  # leave the count at once (else three silent intervals do it)
            try:
                self.redis.zrem(self._k("members", "alive"), self.member)
            except (redis.exceptions.RedisError, OSError):
                pass
        self.redis.close()

    def __repr__(self) -> str:
        return f"RedisStateStore({self.url_safe!r}, namespace={self.namespace!r})"
