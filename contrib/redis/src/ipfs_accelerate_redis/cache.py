"""The response cache in Redis: one store for every process and host.

Each entry is a hash ``{prefix}:cache:e:{namespace}\\n{key}`` (metadata and the
self-checking body; Redis expires it at its TTL).  A sorted set by last use drives LRU
eviction, one by creation time serves invalidation by age and export, and a hash of
sizes keeps the byte total; a write, its bookkeeping and any eviction are one Lua script,
so concurrent writers never leave the totals wrong.  Every call has the socket timeout;
the cache stage treats a failure as a miss.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ipfs_accelerate_py.caching.entry import CacheEntry
from ipfs_accelerate_py.errors import ConfigError

from .health import redact_url

NAMESPACE_ENV = "IPFS_ACCELERATE_REDIS_NAMESPACE"

# KEYS: lru, created, sizes, totals.  ARGV: entry-key prefix, then per removal a member.
_REMOVE = """
local function remove(member)
  local sz = redis.call('HGET', KEYS[3], member)
  if sz then redis.call('HINCRBY', KEYS[4], 'bytes', -tonumber(sz)) end
  redis.call('HDEL', KEYS[3], member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  return redis.call('DEL', ARGV[1] .. member)
end
"""

# ARGV: prefix, member, backend, operation, model, created, expires ('' none), body, size,
# now, max_entries, max_bytes.
PUT_LUA = _REMOVE + """
remove(ARGV[2])
local key = ARGV[1] .. ARGV[2]
redis.call('HSET', key, 'backend', ARGV[3], 'operation', ARGV[4], 'model', ARGV[5],
           'created', ARGV[6], 'expires', ARGV[7], 'body', ARGV[8])
if ARGV[7] ~= '' then redis.call('PEXPIREAT', key, math.floor(tonumber(ARGV[7]) * 1000)) end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[9])
redis.call('HINCRBY', KEYS[4], 'bytes', tonumber(ARGV[9]))
redis.call('ZADD', KEYS[1], ARGV[10], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
local evicted = 0
while redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[11])
      or tonumber(redis.call('HGET', KEYS[4], 'bytes') or '0') > tonumber(ARGV[12]) do
  local victim = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not victim then break end
  remove(victim)
  evicted = evicted + 1
end
if evicted > 0 then redis.call('HINCRBY', KEYS[4], 'evictions', evicted) end
return evicted
"""

# ARGV: prefix, members...
DELETE_LUA = _REMOVE + """
local n = 0
for i = 2, #ARGV do n = n + remove(ARGV[i]) end
return n
"""


def _s(v: Any) -> str:
    return v.decode("utf-8", "surrogatepass") if isinstance(v, bytes) else str(v)


class RedisCacheStore:
    """A :class:`~ipfs_accelerate_py.caching.CacheStore` in Redis.

    :param url: ``redis://[user:password@]host:port/db`` (``rediss://``, ``unix://``).
    :param prefix: the key prefix (default ``IPFS_ACCELERATE_REDIS_NAMESPACE`` or
        ``ipfs_accelerate``): deployments or test runs apart.  Cache namespaces
        (``CacheConfig.namespace``) separate tenants inside one prefix.
    :param max_entries: / :param max_bytes: bounds, enforced by LRU eviction.
    :param socket_timeout: seconds per Redis call.
    """

    name = "redis"

    def __init__(self, url: str, *, prefix: str | None = None, max_entries: int = 1_000_000,
                 max_bytes: int = 1024 ** 3, socket_timeout: float = 1.0,
                 client: redis.Redis | None = None) -> None:
        self.url_safe = redact_url(url)
        self.prefix = f"{prefix or os.environ.get(NAMESPACE_ENV) or 'ipfs_accelerate'}:cache:"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        if client is None:
            try:
                client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                              socket_connect_timeout=socket_timeout,
                                              retry=Retry(NoBackoff(), 0))
            except ValueError as exc:
                raise ConfigError("cache.store", f"{self.url_safe}: {exc}") from None
        self.redis = client
        self._put = client.register_script(PUT_LUA)
        self._delete = client.register_script(DELETE_LUA)
        p = self.prefix
        self._keys = [p + "lru", p + "created", p + "sizes", p + "totals"]

    @staticmethod
    def _member(namespace: str, key: str) -> str:
        return f"{namespace}\n{key}"

    def get(self, namespace: str, key: str, now: float) -> CacheEntry | None:
        member = self._member(namespace, key)
        fields = self.redis.hgetall(self.prefix + "e:" + member)
        if not fields:
            return None
        f = {_s(k): v for k, v in fields.items()}
        try:
            exp = _s(f.get("expires", b""))
            e = CacheEntry(namespace, key, _s(f["backend"]), _s(f["operation"]),
                           _s(f["model"]) or None, float(_s(f["created"])),
                           float(exp) if exp else None, bytes(f["body"]))
        except (KeyError, ValueError):
            return CacheEntry(namespace, key, "", "", None, 0.0, None, b"")  # a damaged hash
        if e.expired(now):
            return None
        self.redis.zadd(self._keys[0], {member: time.time()}, xx=True)  # last use
        return e

    def put(self, entry: CacheEntry) -> None:
        self._put(keys=self._keys, args=[
            self.prefix + "e:", self._member(entry.namespace, entry.key), entry.backend,
            entry.operation, entry.model or "", repr(entry.created),
            "" if entry.expires is None else repr(entry.expires), entry.body, entry.size,
            time.time(), self.max_entries, self.max_bytes])

    def _members(self, namespace: str | None, key: str | None,
                 created_before: float | None) -> list[str]:
        if namespace is not None and key is not None:
            return [self._member(namespace, key)]
        top = "(" + repr(created_before) if created_before is not None else "+inf"
        out = [_s(m) for m in self.redis.zrangebyscore(self._keys[1], "-inf", top)]
        if namespace is not None:
            out = [m for m in out if m.split("\n", 1)[0] == namespace]
        if key is not None:
            out = [m for m in out if m.split("\n", 1)[1] == key]
        return out

    def invalidate(self, *, namespace: str | None = None, key: str | None = None,
                   model: str | None = None, created_before: float | None = None) -> int:
        members = self._members(namespace, key, created_before)
        if model is not None and members:
            pipe = self.redis.pipeline(transaction=False)
            for m in members:
                pipe.hget(self.prefix + "e:" + m, "model")
            members = [m for m, got in zip(members, pipe.execute())
                       if got is not None and _s(got) == model]
        n = 0
        for i in range(0, len(members), 500):
            n += int(self._delete(keys=self._keys, args=[self.prefix + "e:", *members[i:i + 500]]))
        return n

    def entries(self, namespace: str | None = None) -> Iterator[CacheEntry]:
        members = self._members(namespace, None, None)
        for i in range(0, len(members), 500):
            chunk = members[i:i + 500]
            pipe = self.redis.pipeline(transaction=False)
            for m in chunk:
                pipe.hgetall(self.prefix + "e:" + m)
            for m, fields in zip(chunk, pipe.execute()):
                if not fields:
                    continue
                f = {_s(k): v for k, v in fields.items()}
                ns, key = m.split("\n", 1)
                try:
                    exp = _s(f.get("expires", b""))
                    yield CacheEntry(ns, key, _s(f["backend"]), _s(f["operation"]),
                                     _s(f["model"]) or None, float(_s(f["created"])),
                                     float(exp) if exp else None, bytes(f["body"]))
                except (KeyError, ValueError):
                    continue

    def info(self) -> dict:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._keys[0])
        pipe.hmget(self._keys[3], "bytes", "evictions")
        count, (size, evictions) = pipe.execute()
        return {"store": self.name, "url": self.url_safe, "entries": int(count),
                "bytes": int(size or 0), "evictions": int(evictions or 0),
                "max_entries": self.max_entries, "max_bytes": self.max_bytes}

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"RedisCacheStore({self.url_safe!r}, prefix={self.prefix!r})"
