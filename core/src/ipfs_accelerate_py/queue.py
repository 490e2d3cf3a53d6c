"""The pipeline's bounded priority queue of requests.

Requests wait here until the dispatcher can send them: lower priority value first, FIFO
(by ``seq``) within a level.  Entries are partitioned by ``group`` (a backend endpoint) so
the dispatcher can skip groups whose circuit breaker is open without losing their place;
retries waiting out a backoff (``not_before`` in the future) are held aside until due, and
entries past their ``deadline`` are handed back by :meth:`PriorityRequestQueue.expire` so
the pipeline can fail them explicitly (nothing is ever dropped silently).

Not thread-safe: the pipeline calls it under its own lock.  ``now`` is passed in by the
caller (monotonic seconds) and must never go backwards between calls.

Implementation: ``heapq`` heaps with lazy deletion.  Every heap item carries a token; an
item is live only while its entry is ``"queued"`` and still carries that token, so taken,
expired, removed or re-queued entries are skipped when they surface at a heap top.
Counts (``len``, per-group depth) are kept exactly on every state change, and the heaps
are compacted when stale items outnumber live ones, so memory stays proportional to the
number of queued entries.
"""

from __future__ import annotations

import heapq
from typing import Callable, Hashable

from .errors import QueueFullError

__all__ = ["QueueEntry", "PriorityRequestQueue"]

QUEUED = "queued"
TAKEN = "taken"
EXPIRED = "expired"
REMOVED = "removed"
NEW = "new"  # constructed, never pushed


class QueueEntry:
    """One queued request.  ``__slots__`` keeps 100k of them small.

    ``state`` is ``"new"`` until first pushed, then one of ``"queued"``, ``"taken"``
    (returned by a pop), ``"expired"`` (returned by :meth:`PriorityRequestQueue.expire`)
    or ``"removed"`` (cancelled).  ``_token`` is the queue's bookkeeping; do not touch.
    """

    __slots__ = ("priority", "seq", "group", "payload", "deadline", "not_before",
                 "batch_key", "state", "_token")

    def __init__(self, priority: int, seq: int, group: str, payload: object,
                 deadline: float | None = None, not_before: float = 0.0,
                 batch_key: Hashable | None = None) -> None:
        self.priority = priority
        self.seq = seq
        self.group = group
        self.payload = payload
        self.deadline = deadline
        self.not_before = not_before
        self.batch_key = batch_key
        self.state = NEW
        self._token = -1

    def __repr__(self) -> str:
        return (f"QueueEntry(priority={self.priority}, seq={self.seq}, group={self.group!r}, "
                f"state={self.state!r}, deadline={self.deadline}, not_before={self.not_before})")


class _Group:
    """Per-group heaps: due entries by (priority, seq), delayed ones by not_before."""

    __slots__ = ("ready", "delayed", "batches", "count")

    def __init__(self) -> None:
        self.ready: list[tuple] = []      # (priority, seq, token, entry)
        self.delayed: list[tuple] = []    # (not_before, priority, seq, token, entry)
        self.batches: dict[Hashable, list[tuple]] = {}  # batch_key -> (priority, seq, token, entry)
        self.count = 0


def _live(entry: QueueEntry, token: int) -> bool:
    return entry.state == QUEUED and entry._token == token


class PriorityRequestQueue:
    """Bounded priority queue of :class:`QueueEntry`.

    Lower ``priority`` value first (0=HIGH, 1=NORMAL, 2=LOW), FIFO by ``seq`` within a
    level; entries are partitioned by ``group`` (a backend endpoint) so the pipeline can
    skip groups whose circuit breaker is open; entries with ``not_before > now`` (retries
    waiting out a backoff) are held aside until due; O(log n) push and pop (times the
    number of groups, which is the handful of endpoints in use).
    """

    def __init__(self, maxsize: int | None = None) -> None:
        if maxsize is not None and maxsize < 1:
            from .errors import ConfigError

            raise ConfigError("maxsize", f"must be >= 1 or None, got {maxsize!r}")
        self.maxsize = maxsize
        self._groups: dict[str, _Group] = {}
        self._deadlines: list[tuple] = []  # (deadline, priority, seq, token, entry)
        self._len = 0
        self._next_token = 0
        self._items = 0  # heap items held in all heaps, live or stale (drives compaction)

    # -- admission --------------------------------------------------------------------

    def push(self, entry: QueueEntry, now: float) -> None:
        """Admit a new request.  Raises :class:`QueueFullError` when the queue is full
        (every held entry counts, due or delayed)."""
        if self.maxsize is not None and self._len >= self.maxsize:
            raise QueueFullError(f"request queue is full ({self.maxsize} queued)")
        self._insert(entry, now)

    def requeue(self, entry: QueueEntry, now: float) -> None:
        """Put back an already-admitted request (a retry).  Never raises for fullness:
        a request the queue once accepted must not be lost, so the bound may be exceeded
        by the number of requests in flight."""
        self._insert(entry, now)

    def _insert(self, entry: QueueEntry, now: float) -> None:
        if entry.state == QUEUED:
            raise ValueError(f"entry is already queued: {entry!r}")
        token = self._next_token
        self._next_token += 1
        entry._token = token
        entry.state = QUEUED
        group = self._groups.get(entry.group)
        if group is None:
            group = self._groups[entry.group] = _Group()
        group.count += 1
        self._len += 1
        if entry.not_before <= now:
            self._make_ready(group, entry, token)
        else:
            heapq.heappush(group.delayed, (entry.not_before, entry.priority, entry.seq, token, entry))
            self._items += 1
        if entry.deadline is not None:
            heapq.heappush(self._deadlines, (entry.deadline, entry.priority, entry.seq, token, entry))
            self._items += 1

    def _make_ready(self, group: _Group, entry: QueueEntry, token: int) -> None:
        item = (entry.priority, entry.seq, token, entry)
        heapq.heappush(group.ready, item)
        self._items += 1
        if entry.batch_key is not None:
            heap = group.batches.get(entry.batch_key)
            if heap is None:
                heap = group.batches[entry.batch_key] = []
            heapq.heappush(heap, item)
            self._items += 1

    def _promote(self, group: _Group, now: float) -> None:
        """Move delayed entries that are due into the ready heaps."""
        delayed = group.delayed
        while delayed and delayed[0][0] <= now:
            _, _, _, token, entry = heapq.heappop(delayed)
            self._items -= 1
            if _live(entry, token):
                self._make_ready(group, entry, token)

    def _ready_head(self, group: _Group) -> tuple | None:
        ready = group.ready
        while ready:
            item = ready[0]
            if _live(item[3], item[2]):
                return item
            heapq.heappop(ready)
            self._items -= 1
        return None

    def _leave(self, entry: QueueEntry, state: str) -> None:
        """Mark a queued entry as gone and keep the counts exact."""
        entry.state = state
        self._len -= 1
        group = self._groups[entry.group]
        group.count -= 1
        if group.count == 0:
            # Whatever its heaps still hold is stale; drop them at once.
            self._items -= len(group.ready) + len(group.delayed) + sum(
                len(h) for h in group.batches.values())
            del self._groups[entry.group]

    # -- taking -----------------------------------------------------------------------

    def pop(self, now: float, ready: Callable[[str], bool] = lambda g: True) -> QueueEntry | None:
        """Take the best ``(priority, seq)`` due entry among groups for which
        ``ready(group)`` is true, or ``None``.  ``ready`` is called at most once per group,
        and only for groups that have a due entry."""
        best: tuple | None = None
        best_group: _Group | None = None
        for name, group in self._groups.items():
            self._promote(group, now)
            head = self._ready_head(group)
            if head is None:
                continue
            if best is not None and best[:3] < head[:3]:
                # Cannot win; skip the (possibly costly) readiness check.
                continue
            if not ready(name):
                continue
            best, best_group = head, group
        if best is None or best_group is None:
            return None
        heapq.heappop(best_group.ready)
        self._items -= 1
        entry = best[3]
        self._leave(entry, TAKEN)
        self._maybe_compact()
        return entry

    def pop_batch(self, like: QueueEntry, limit: int, now: float) -> list[QueueEntry]:
        """Take up to ``limit`` more due entries with the same group and (non-None)
        batch key as ``like``, in ``(priority, seq)`` order.  Uses the per-(group,
        batch_key) index, so its cost does not depend on the rest of the queue."""
        if like.batch_key is None or limit <= 0:
            return []
        group = self._groups.get(like.group)
        if group is None:
            return []
        self._promote(group, now)
        heap = group.batches.get(like.batch_key)
        taken: list[QueueEntry] = []
        while heap and len(taken) < limit:
            _, _, token, entry = heapq.heappop(heap)
            self._items -= 1
            if _live(entry, token):
                taken.append(entry)
                self._leave(entry, TAKEN)
                if entry.group not in self._groups:  # the group emptied and was dropped
                    heap = None
                    break
        if heap is not None and not heap and like.group in self._groups:
            group.batches.pop(like.batch_key, None)
        self._maybe_compact()
        return taken

    def expire(self, now: float) -> list[QueueEntry]:
        """Remove and return every queued entry whose deadline is ``<= now`` (state
        ``"expired"``), earliest deadline first.  The caller fails them explicitly."""
        out: list[QueueEntry] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, _, token, entry = heapq.heappop(heap)
            self._items -= 1
            if _live(entry, token):
                self._leave(entry, EXPIRED)
                out.append(entry)
        if out:
            self._maybe_compact()
        return out

    def remove(self, entry: QueueEntry) -> bool:
        """Cancel a queued entry.  True if it was still queued here (now ``"removed"``)."""
        if entry.state != QUEUED:
            return False
        group = self._groups.get(entry.group)
        if group is None:
            return False
        self._leave(entry, REMOVED)
        self._maybe_compact()
        return True

    # -- inspection -------------------------------------------------------------------

    def next_wakeup(self, now: float) -> float | None:
        """The earliest moment the queue changes on its own: a delayed entry becoming
        due (``not_before > now``) or a deadline passing.  A deadline already ``<= now``
        is returned as is (call :meth:`expire`).  None when nothing is pending."""
        best: float | None = None
        for group in self._groups.values():
            self._promote(group, now)
            delayed = group.delayed
            while delayed and not _live(delayed[0][4], delayed[0][3]):
                heapq.heappop(delayed)
                self._items -= 1
            if delayed and (best is None or delayed[0][0] < best):
                best = delayed[0][0]
        heap = self._deadlines
        while heap and not _live(heap[0][4], heap[0][3]):
            heapq.heappop(heap)
            self._items -= 1
        if heap and (best is None or heap[0][0] < best):
            best = heap[0][0]
        return best

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def depth(self, group: str | None = None) -> int:
        """Queued entries in all, or in one group (due and delayed alike)."""
        if group is None:
            return self._len
        g = self._groups.get(group)
        return 0 if g is None else g.count

    def groups(self) -> list[str]:
        """Groups that have queued entries."""
        return list(self._groups)

    def full(self) -> bool:
        return self.maxsize is not None and self._len >= self.maxsize

    # -- housekeeping -----------------------------------------------------------------

    def _maybe_compact(self) -> None:
        # Each live entry holds at most 3 items (ready/delayed, batch, deadline).
        if self._items > 6 * self._len + 1024:
            self._compact()

    def _compact(self) -> None:
        """Rebuild every heap from live items only."""
        items = 0
        for group in self._groups.values():
            group.ready = [it for it in group.ready if _live(it[3], it[2])]
            group.delayed = [it for it in group.delayed if _live(it[4], it[3])]
            heapq.heapify(group.ready)
            heapq.heapify(group.delayed)
            batches = {}
            for key, heap in group.batches.items():
                live = [it for it in heap if _live(it[3], it[2])]
                if live:
                    heapq.heapify(live)
                    batches[key] = live
                    items += len(live)
            group.batches = batches
            items += len(group.ready) + len(group.delayed)
        self._deadlines = [it for it in self._deadlines if _live(it[4], it[3])]
        heapq.heapify(self._deadlines)
        self._items = items + len(self._deadlines)
