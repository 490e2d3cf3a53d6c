"""Distributed ``ipfs-accelerate batch IN.jsonl -o OUT.jsonl --redis URL``.

Several workers (processes, possibly on several hosts) consume one job through a Redis
Stream and a consumer group:

* The job is named after a hash of the input's content (or ``--job NAME``).  Whoever wins
  the ``loader`` lock (SET NX with an expiry it keeps refreshing) adds every valid input
  line to ``ipfs-accelerate:job:<name>:requests`` with the explicit entry id
  ``<line number>-0``.  Explicit ids make loading idempotent: a loader killed midway is
  replaced (its lock expires) and the next one continues after the stream's last entry;
  a duplicate XADD is refused by Redis.
* Each worker (consumer ``host:pid``) reads entries with XREADGROUP, never holding more
  than ``capacity`` at once, runs them through the pipeline ``Client`` and records the
  outcome with one Lua script: HSETNX into ``...:results`` (the first result of an id
  wins, so each id is in the output exactly once) and XACK, atomically.
* A live worker touches its pending entries every ``claim_timeout / 3`` (XCLAIM to itself,
  only for entries it still owns), so only a dead or hung worker's entries become idle;
  every worker XAUTOCLAIMs entries idle longer than ``claim_timeout`` and runs them.  A
  request may therefore be *sent* twice (its first worker died after the provider
  answered), but it is *recorded* once.
* When the results hash holds as many ids as were loaded, every worker writes OUT from it
  (ordered by input line, temp file + rename) and exits.  The job's keys expire after
  ``ttl`` (7 days), so running the command again just rewrites OUT.

API keys are never written to Redis: entries hold the request lines, results the same
redacted result lines the single-process batch writes.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

import redis

from ipfs_accelerate_py.jobs import (BatchJob, JobError, Progress, input_digest,
                                     read_batch_input, result_record)
from ipfs_accelerate_py.request import Request

from .health import redact_url

PREFIX = "ipfs-accelerate:job:"
GROUP = "workers"
DEFAULT_CLAIM_TIMEOUT = 30.0
DEFAULT_TTL = 7 * 86400
DEFAULT_MAX_DELIVERIES = 5

# KEYS: results hash, stream.  ARGV: group, then (entry id, request id, value) triples.
# First result wins (HSETNX); the entry is acknowledged in the same atomic step.
RECORD_LUA = """
local added = 0
for i = 2, #ARGV, 3 do
  added = added + redis.call('HSETNX', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[i])
end
return added
"""

# KEYS: stream.  ARGV: group, consumer, entry ids.  Reset the idle time of the entries
# this consumer still owns (never takes back one another worker has claimed meanwhile).
TOUCH_LUA = """
local kept = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept
"""

# KEYS: lock.  ARGV: owner, ttl ms.  Extend the lock only while we still hold it.
REFRESH_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class JobKeys:
    """The Redis keys of one job."""

    def __init__(self, name: str) -> None:
        self.name = name
        base = f"{PREFIX}{name}:"
        self.requests = base + "requests"  # stream of request lines
        self.results = base + "results"    # hash: request id -> "<line>:<output line>"
        self.meta = base + "meta"          # hash: total, bad, loaded
        self.lock = base + "loader"        # who loads the stream

    def all(self) -> list[str]:
        return [self.requests, self.results, self.meta, self.lock]


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _report(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def default_consumer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def record_results(r: redis.Redis, keys: JobKeys,
                   items: Iterable[tuple[str, str, int, str]]) -> int:
    """Record (entry id, request id, line number, output line) outcomes and acknowledge
    their entries; an id that already has a result keeps it.  Returns how many were new."""
    argv: list[Any] = [GROUP]
    for entry_id, rid, line_no, text in items:
        argv += [entry_id, rid, f"{line_no}:{text}"]
    if len(argv) == 1:
        return 0
    script = r.register_script(RECORD_LUA)  # EVALSHA, reloaded after a server restart
    return int(script(keys=[keys.results, keys.requests], args=argv))


@dataclass
class BatchSummary:
    job: str
    total: int
    written: int
    ok: int
    failed: int
    bad: int
    processed_here: int   # results this worker recorded first
    claimed: int          # entries taken over from other (dead) workers
    loaded_here: bool

    @property
    def lost(self) -> int:
        return self.total - self.written

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 and self.bad == 0 and self.lost == 0 else 1


def _decode(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


class _Worker:
    def __init__(self, r: redis.Redis, keys: JobKeys, consumer: str, lines: list[Any],
                 client: Any, claim_timeout: float, capacity: int, ttl: int,
                 progress: Progress | None) -> None:
        self.r = r
        self.keys = keys
        self.consumer = consumer
        self.lines = lines
        self.client = client
        self.claim_timeout = claim_timeout
        self.capacity = max(1, capacity)
        self.ttl = ttl
        self.progress = progress
        self.redact: Callable[[str], str] = str
        self.report: Callable[[str], None] = _report
        self.max_deliveries = DEFAULT_MAX_DELIVERIES
        self.digest = ""  # of this worker's input; every worker must have the same
        self.done_q: queue.Queue = queue.Queue()
        self.in_flight: dict[str, tuple[str, int]] = {}  # entry id -> (request id, line)
        self.loaded_here = False
        self.processed = 0
        self.claimed = 0
        self.cursor = "0-0"
        self.touch = r.register_script(TOUCH_LUA)
        self.refresh = r.register_script(REFRESH_LUA)

    # ----------------------------------------------------------------- loading
    def create_group(self) -> None:
        try:  # at id 0: the group sees every entry, whenever it is added
            self.r.xgroup_create(self.keys.requests, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def try_load(self) -> bool:
        """Load the stream if nobody else is (or the last loader died).  True once loaded."""
        if _decode(self.r.hget(self.keys.meta, "loaded")) == "1":
            return True
        lock_ms = max(1000, int(self.claim_timeout * 1000))
        if not self.r.set(self.keys.lock, self.consumer, nx=True, px=lock_ms):
            return False
        self.loaded_here = True
        last = self.r.xrevrange(self.keys.requests, count=1)
        after = int(_decode(last[0][0]).split("-")[0]) if last else 0
        todo = [ln for ln in self.lines if ln.line_no > after]
        for start in range(0, len(todo), 500):
            pipe = self.r.pipeline(transaction=False)
            for ln in todo[start:start + 500]:
                pipe.xadd(self.keys.requests, {"line": ln.line_no, "request": ln.request_json()},
                          id=f"{ln.line_no}-0")
            for res in pipe.execute(raise_on_error=False):
                if isinstance(res, Exception) and "equal or smaller" not in str(res):
                    raise res  # anything but "another loader added it already"
            if not self.refresh(keys=[self.keys.lock], args=[self.consumer, lock_ms]):
                return False  # we were too slow and lost the lock; the next loader continues
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.meta, mapping={"total": len(self.lines), "input": self.digest,
                                           "loaded": 1})
        pipe.delete(self.keys.lock)
        for k in (self.keys.requests, self.keys.meta):
            pipe.expire(k, self.ttl)
        pipe.execute()
        return True

    def status(self) -> tuple[bool, int, int]:
        """(loaded, total, results so far)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.keys.meta, ["loaded", "total", "input"])
        pipe.hlen(self.keys.results)
        (loaded, total, digest), count = pipe.execute()
        if _decode(loaded) != "1":
            return False, 0, int(count)
        if (digest and _decode(digest) != self.digest) or int(total) != len(self.lines):
            # Another file, or other plugins here (a line valid there is bad here): this
            # worker would record failures for requests the others can run.
            raise JobError(f"job {self.keys.name} was loaded from another input or with other "
                           f"backends installed ({int(total)} valid requests there, "
                           f"{len(self.lines)} here); every worker needs the same IN and plugins")
        return True, int(total), int(count)

    # ----------------------------------------------------------------- running
    def dispatch(self, entries: list[tuple[Any, Mapping[Any, Any]]]) -> None:
        parsed = []
        for entry_id, fields in entries:
            if not fields:  # deleted under us (the job expired or was removed)
                continue
            eid = _decode(entry_id)
            f = {_decode(k): _decode(v) for k, v in fields.items()}
            line_no = int(f["line"])
            obj = json.loads(f["request"])
            parsed.append((eid, line_no, obj))
        if not parsed:
            return
        have = self.r.hmget(self.keys.results, [obj["id"] for _, _, obj in parsed])
        stale = [eid for (eid, _, _), got in zip(parsed, have) if got is not None]
        if stale:  # already recorded by a worker that stalled, then finished
            self.r.xack(self.keys.requests, GROUP, *stale)
        for (eid, line_no, obj), got in zip(parsed, have):
            if got is not None or eid in self.in_flight:
                continue
            self.in_flight[eid] = (obj["id"], line_no)
            try:
                req = Request(operation=obj["operation"], payload=obj["payload"],
                              backend=obj["backend"], priority=obj.get("priority", 1),
                              tags={"id": obj["id"]})
                fut = self.client.submit(req, block=True)
            except Exception as exc:  # refused up front: a failed result, not a hang
                self.done_q.put((eid, None, exc))
                continue
            fut.add_done_callback(lambda f, eid=eid: self.done_q.put((eid, f, None)))

    def harvest(self, wait: float = 0.0) -> None:
        batch = []
        try:
            batch.append(self.done_q.get(timeout=wait) if wait > 0 else self.done_q.get_nowait())
            while True:
                batch.append(self.done_q.get_nowait())
        except queue.Empty:
            pass
        if not batch:
            return
        items = []
        nfail = 0
        for eid, fut, exc in batch:
            rid, line_no = self.in_flight.pop(eid)
            ok, text = result_record(rid, exc if exc is not None else fut, self.redact)
            nfail += not ok
            items.append((eid, rid, line_no, text))
        added = record_results(self.r, self.keys, items)
        if added and self.processed == 0:  # the hash exists now: give it the job's expiry
            self.r.expire(self.keys.results, self.ttl)
        self.processed += added
        if self.progress is not None:
            self.progress.advance(0, nfail)

    def autoclaim(self, count: int) -> list[Any]:
        res = self.r.xautoclaim(self.keys.requests, GROUP, self.consumer,
                                min_idle_time=int(self.claim_timeout * 1000),
                                start_id=self.cursor, count=count)
        self.cursor = _decode(res[0])
        # (our own entries are touched while in flight; skip one that a stall let go idle)
        entries = [e for e in res[1] if e[1] and _decode(e[0]) not in self.in_flight]
        self.claimed += len(entries)
        if entries:
            self.report(f"worker {self.consumer}: took over {len(entries)} request(s) idle longer "
                 f"than {self.claim_timeout:g} s")
            entries = self._drop_poison(entries)
        return entries

    def _drop_poison(self, entries: list[Any]) -> list[Any]:
        """A request whose every worker died (delivered ``max_deliveries`` times) is
        recorded as failed rather than passed on to kill the next worker too."""
        pipe = self.r.pipeline(transaction=False)
        for e in entries:
            pipe.xpending_range(self.keys.requests, GROUP, min=e[0], max=e[0], count=1)
        times = {_decode(p["message_id"]): int(p["times_delivered"])
                 for found in pipe.execute() for p in found}
        keep, failed = [], []
        for entry in entries:
            eid = _decode(entry[0])
            if times.get(eid, 0) <= self.max_deliveries:
                keep.append(entry)
                continue
            f = {_decode(k): _decode(v) for k, v in entry[1].items()}
            rid = json.loads(f["request"])["id"]
            failed.append((eid, rid, int(f["line"]), json.dumps({"id": rid, "ok": False, "error": {
                "type": "WorkerLost", "message": f"delivered {times[eid]} times; every worker "
                                                 f"that took it stopped before finishing"}})))
        if failed:
            self.report(f"worker {self.consumer}: {len(failed)} request(s) failed: every worker that "
                 f"took them stopped ({self.max_deliveries} deliveries)")
            self.processed += record_results(self.r, self.keys, failed)
        return keep

    def run(self) -> None:
        self.create_group()
        loaded = self.try_load()
        now = time.monotonic()
        next_touch = next_claim = now + self.claim_timeout / 3
        next_check = now
        beat = self.claim_timeout / 3
        while True:
            self.harvest()
            now = time.monotonic()
            if now >= next_check:
                if not loaded:
                    loaded = self.try_load()
                is_loaded, total, count = self.status()
                loaded = loaded or is_loaded
                if self.progress is not None:
                    self.progress.total, self.progress.done = total, count
                if is_loaded and count >= total:
                    return
                next_check = now + 0.1
            if not loaded:  # nothing to read before the job is known to be this input
                time.sleep(0.05)
                continue
            if self.in_flight and now >= next_touch:
                self.touch(keys=[self.keys.requests],
                           args=[GROUP, self.consumer, *self.in_flight])
                next_touch = now + beat
            free = self.capacity - len(self.in_flight)
            if free > 0 and now >= next_claim:
                self.dispatch(self.autoclaim(free))
                next_claim = now + min(beat, 1.0)
                free = self.capacity - len(self.in_flight)
            if free > 0:
                got = self.r.xreadgroup(GROUP, self.consumer, {self.keys.requests: ">"},
                                        count=free, block=50)
                for _stream, entries in got or ():
                    self.dispatch(entries)
            else:
                self.harvest(wait=0.05)


def _write_output(r: redis.Redis, keys: JobKeys, path: Path) -> tuple[int, int]:
    """OUT from the results hash, by input line, atomically.  Returns (written, ok)."""
    rows = []
    for _rid, value in r.hscan_iter(keys.results, count=1000):
        line_no, _, text = _decode(value).partition(":")
        rows.append((int(line_no), text))
    rows.sort()
    ok = 0
    tmp = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for _, text in rows:
            ok += bool(json.loads(text).get("ok"))
            f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(rows), ok


def _write_errors(path: Path, bad: list[dict], redact: Callable[[str], str]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for b in bad:
            f.write(redact(json.dumps(b)) + "\n")
    os.replace(tmp, path)


def check_redis_url(url: str) -> None:
    """A one-line error for a URL that is not a Redis one (``http://...``)."""
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise JobError(f"--redis {redact_url(url)}: not a Redis URL; use "
                       + ", ".join(f"{s}://" for s in REDIS_SCHEMES))


def run_distributed_batch(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
                          redis_url: str | None = None, *, job: str | None = None,
                          consumer: str | None = None,
                          client: Any | Callable[[list[str]], Any] = None,
                          installed: Mapping[str, Any] | None = None,
                          claim_timeout: float = DEFAULT_CLAIM_TIMEOUT, capacity: int = 16,
                          errors_path: str | os.PathLike[str] | None = None,
                          redis_client: redis.Redis | None = None, ttl: int = DEFAULT_TTL,
                          max_deliveries: int = DEFAULT_MAX_DELIVERIES,
                          show_progress: bool = True,
                          redact: Callable[[str], str] = str,
                          report: Callable[[str], None] = _report) -> BatchSummary:
    """Work on the job of ``input_path`` with the other workers until every request has a
    result, then write ``output_path``.

    ``client`` is a pipeline Client, or a callable building one from the list of backends
    the input uses (called once; that client is closed at the end).  ``installed`` maps
    backend names to classes (default: the installed plugins) to validate input lines.
    A request delivered more than ``max_deliveries`` times (each of its workers died) is
    recorded as failed (``WorkerLost``).  ``redact`` scrubs secrets from what is written;
    ``report`` shows one-line notes.  Problems the user can fix raise
    :class:`~ipfs_accelerate_py.jobs.JobError`.
    """
    if not claim_timeout > 0:
        raise JobError("--claim-timeout must be > 0 seconds")
    if redis_url is not None:
        check_redis_url(redis_url)
    if installed is None:
        from ipfs_accelerate_py.plugins import get_plugin_manager

        installed = get_plugin_manager().backends()
    lines, bad = read_batch_input(str(input_path), installed)
    out = Path(output_path)
    digest = input_digest(input_path)
    name = job or digest[:16]
    keys = JobKeys(name)
    consumer = consumer or default_consumer()
    try:
        r = redis_client or redis.Redis.from_url(redis_url or "redis://127.0.0.1:6379/0",
                                                 socket_connect_timeout=5)
    except ValueError as exc:
        raise JobError(f"--redis: {exc}") from None
    shown = redact_url(redis_url) if redis_url else "the given Redis client"
    try:
        r.ping()
    except redis.RedisError as exc:
        raise JobError(f"cannot reach Redis at {shown}: {exc}") from None
    try:
        _write_errors(Path(errors_path) if errors_path else out.with_name(out.name + ".errors.jsonl"),
                      bad, redact)
    except OSError as exc:
        raise JobError(f"cannot write the errors file: {exc.strerror}") from None
    own_client = callable(client) and not hasattr(client, "submit")
    used = sorted({ln.backend for ln in lines})
    pipeline = (client(used) if used else None) if own_client else client
    if pipeline is None and lines:
        raise JobError("no pipeline client")
    progress = Progress(len(lines), pipeline, label=f"{consumer} ") if show_progress else None
    worker = _Worker(r, keys, consumer, lines, pipeline, claim_timeout, capacity, ttl, progress)
    worker.digest = digest
    worker.max_deliveries = max_deliveries
    worker.redact = redact
    worker.report = report
    try:
        try:
            if progress is not None:
                with progress:
                    worker.run()
            else:
                worker.run()
        except redis.RedisError as exc:
            raise JobError(f"lost Redis at {shown}: {exc}") from None
        if worker.loaded_here:
            for b in bad:
                report(f"{input_path}:{b['line']}: {b['error']}")
        total = int(r.hget(keys.meta, "total") or 0)
        try:
            written, ok = _write_output(r, keys, out)
        except OSError as exc:
            raise JobError(f"writing {out} failed: {exc.strerror}; every result stays in Redis "
                           f"until the job expires: run the same command again") from None
    finally:
        if own_client and pipeline is not None:
            pipeline.close(wait=False)
    return BatchSummary(job=name, total=total, written=written, ok=ok, failed=written - ok,
                        bad=len(bad), processed_here=worker.processed, claimed=worker.claimed,
                        loaded_here=worker.loaded_here)


def run_cli_job(job: BatchJob) -> int:
    """``ipfs-accelerate batch ... --redis URL``: the command's job run by
    :func:`run_distributed_batch` (called through the ``accelerate_cli_run_batch`` hook)."""
    opts = job.options
    if getattr(opts, "restart", False):
        raise JobError("--restart does not apply with --redis: name a new job with --job")
    check_redis_url(opts.redis)
    made: list[Any] = []

    def make_client(used: list[str]) -> Any:
        made.append(job.make_client(used))
        return made[0]

    concurrency = getattr(opts, "concurrency", None) or 8
    summary = run_distributed_batch(
        job.input_path, job.output_path, opts.redis, job=opts.job, client=make_client,
        installed=job.backends, claim_timeout=opts.claim_timeout,
        capacity=2 * concurrency, errors_path=job.errors_path, redact=job.redact,
        report=job.report)
    if made:
        print(made[0].stats().table())
    print(f"job {summary.job}: this worker ran {summary.processed_here} request(s), "
          f"took over {summary.claimed}" + (", loaded the job" if summary.loaded_here else ""))
    print(f"requests: {summary.total}  written: {summary.written}  ok: {summary.ok}  "
          f"failed: {summary.failed}  bad lines: {summary.bad}  lost: {summary.lost}")
    print(f"output: {job.output_path}")
    return summary.exit_code
