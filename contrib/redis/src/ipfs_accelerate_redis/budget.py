"""Budgets shared by every process through Redis: the ledger of
:mod:`ipfs_accelerate_py.costs` (reserve / settle) as atomic server-side scripts.

Each ``budget|window`` is one hash with integer fields ``settled`` and ``reserved``
(pico-dollars or tokens), changed only by HINCRBY inside a Lua script, so concurrent
processes never read-modify-write.  The limit check runs in Lua numbers (doubles): exact
up to 2**53 units ($9 000 in pico-dollars); above that it may be off by a few units, while
the stored sums stay exact integers.

Settled spend survives a Redis restart as far as Redis persists it (the tests run
redis-server with ``appendonly yes``, ``appendfsync always``).  While Redis is
unreachable a reservation is refused for now (the request waits and tries again, up to its
deadline) and settlements are kept here and written when Redis answers again, in order,
so no settled spend is lost.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Sequence

import redis

if TYPE_CHECKING:  # pragma: no cover
    from .store import RedisStateStore

# KEYS: the budgets' hashes.  ARGV: amount, limit, ttl ms (0: none) for each key.  All
# fit: reserve each, return 0; else the 1-based index of the first that does not.
RESERVE_LUA = """
local n = #KEYS
for i = 1, n do
  local h = redis.call('HMGET', KEYS[i], 'settled', 'reserved')
  local used = tonumber(h[1] or '0') + tonumber(h[2] or '0')
  if used + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) then return i end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'reserved', ARGV[3 * i - 2])
  local ttl = tonumber(ARGV[3 * i])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 0
"""

# KEYS: the budgets' hashes.  ARGV: reserved_1, actual_1, ...  Turn each reservation into
# spend; return each hash's settled spend after.
SETTLE_LUA = """
local out = {}
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'reserved', -tonumber(ARGV[2 * i - 1]))
  out[i] = redis.call('HINCRBY', KEYS[i], 'settled', ARGV[2 * i])
end
return out
"""

WINDOW_TTL_MS = 40 * 86_400_000  # a day or month window's hash outlives its window


class LedgerUnavailable(Exception):
    """Redis did not answer a reservation."""


class RedisLedger:
    """The ledger interface of :class:`ipfs_accelerate_py.costs.MemoryLedger`, in Redis."""

    shared = True

    def __init__(self, store: RedisStateStore) -> None:
        self.store = store
        self._reserve = store.redis.register_script(RESERVE_LUA)
        self._settle = store.redis.register_script(SETTLE_LUA)
        self._lock = threading.Lock()
        self._pending: list[tuple[str, int, int]] = []  # settlements Redis has not taken yet

    def _key(self, ledger_key: str) -> str:
        return self.store._k("budget", ledger_key)

    def reserve(self, entries: Sequence[tuple[str, int, int]]) -> int | None:
        self._flush()
        keys = [self._key(k) for k, _, _ in entries]
        args: list[Any] = []
        for k, amount, limit in entries:
            args += [amount, limit, 0 if k.endswith("|total") else WINDOW_TTL_MS]
        try:
            bad = int(self._reserve(keys=keys, args=args))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise LedgerUnavailable(f"Redis at {self.store.url_safe} did not answer "
                                    f"({type(exc).__name__})") from None
        return None if bad == 0 else bad - 1

    def settle(self, entries: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
        with self._lock:
            self._pending.extend(entries)
            pending, self._pending = self._pending, []
            try:
                after = self._write(pending)
            except (redis.exceptions.RedisError, OSError):
                self._pending = pending + self._pending  # kept, in order, for the next call
                return [(0, 0) for _ in entries]  # no threshold crossing seen while down
        # The caller's entries are the last ones written.
        mine = after[len(after) - len(entries):]
        return [(a - actual, a) for a, (_, _, actual) in zip(mine, entries)]

    def _write(self, rows: Sequence[tuple[str, int, int]]) -> list[int]:
        if not rows:
            return []
        keys = [self._key(k) for k, _, _ in rows]
        args: list[Any] = []
        for _, reserved, actual in rows:
            args += [reserved, actual]
        return [int(v) for v in self._settle(keys=keys, args=args)]

    def _flush(self) -> None:
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, []
            try:
                self._write(pending)
            except (redis.exceptions.RedisError, OSError):
                self._pending = pending + self._pending

    def usage(self, ledger_key: str) -> tuple[int, int]:
        self._flush()
        try:
            settled, reserved = self.store.redis.hmget(self._key(ledger_key), "settled",
                                                       "reserved")
        except (redis.exceptions.RedisError, OSError) as exc:
            raise LedgerUnavailable(f"Redis at {self.store.url_safe} did not answer "
                                    f"({type(exc).__name__})") from None
        return int(settled or 0), int(reserved or 0)

    def pending(self) -> int:
        """Settlements waiting for Redis."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        self._flush()
