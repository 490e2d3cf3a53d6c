"""``ipfs-accelerate batch --redis URL``: several workers share one job through Redis
Streams; a worker killed mid-run loses nothing; every request is in OUT exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
import redis

from ipfs_accelerate_redis.batch import (GROUP, JobKeys, _Worker, input_digest, record_results,
                                         run_distributed_batch)

CLI = [sys.executable, "-m", "ipfs_accelerate_py.cli"]
KEYS = ("test-key-1", "test-key-2")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not any(t in k for t in ("API_KEY", "API_TOKEN", "HF_TOKEN", "S3_", "AWS_"))}
    env.update({"OPENAI_API_KEY": KEYS[0], "OPENAI_API_KEY_2": KEYS[1]})
    return env


def _write_requests(path: Path, n: int) -> list[str]:
    ids = []
    with open(path, "w") as f:
        for i in range(n):
            ids.append(f"r{i}")
            f.write(json.dumps({"id": f"r{i}", "backend": "openai", "operation": "chat",
                                "priority": ["HIGH", "NORMAL", "LOW"][i % 3],
                                "payload": {"model": "gpt-4o-mini", "messages": [
                                    {"role": "user", "content": f"request {i}"}]}}) + "\n")
    return ids


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The simulator in its own process (as a user would run it), 50 ms per answer."""
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([*CLI, "sim", "--port", "0", "--latency", "0.05",
                                 "--backends", "openai"], stdout=f, stderr=subprocess.STDOUT,
                                env=_env())
    try:
        end = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < end and proc.poll() is None:
            for line in log.read_text().splitlines():
                if line.startswith("simulator listening on "):
                    url = line.split()[-1]
            time.sleep(0.05)
        assert url, log.read_text()
        yield url + "/openai/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def _all_redis_bytes(r: redis.Redis) -> bytes:
    """Every key name and every value on the server, whatever its type."""
    out = []
    for key in r.scan_iter(count=1000):
        out.append(key)
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key) or b"")
        elif kind == b"hash":
            for k, v in r.hgetall(key).items():
                out += [k, v]
        elif kind == b"stream":
            for eid, fields in r.xrange(key):
                out.append(eid)
                for k, v in fields.items():
                    out += [k, v]
        elif kind == b"list":
            out += r.lrange(key, 0, -1)
        elif kind == b"set":
            out += list(r.smembers(key))
        elif kind == b"zset":
            out += r.zrange(key, 0, -1)
    return b"\n".join(out)


def _wait(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_three_workers_one_killed_every_request_exactly_once(sim_url: str, redis_url: str,
                                                             namespace: str, tmp_path: Path) -> None:
    n = 200
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_requests(inp, n)
    r = redis.Redis.from_url(redis_url)
    keys = JobKeys(namespace)
    cmd = [*CLI, "batch", str(inp), "-o", str(out), "--redis", redis_url, "--job", namespace,
           "--base-url", sim_url, "--concurrency", "2", "--claim-timeout", "1"]
    procs, logs = [], []
    for w in range(3):
        so, se = tmp_path / f"w{w}.out", tmp_path / f"w{w}.err"
        logs.append((so, se))
        with open(so, "w") as fo, open(se, "w") as fe:
            procs.append(subprocess.Popen(cmd, stdout=fo, stderr=fe, env=_env()))
    victim = procs[0]
    victim_name = f"{socket.gethostname()}:{victim.pid}"

    def victim_busy() -> bool:
        held = r.xpending_range(keys.requests, GROUP, "-", "+", 100, consumername=victim_name) \
            if r.exists(keys.requests) else []
        return bool(held) and r.hlen(keys.results) >= 30

    try:
        assert _wait(victim_busy), "the victim never held work"
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # What the dead worker had claimed and not finished: the others must do it.
        orphans = r.xpending_range(keys.requests, GROUP, "-", "+", 100, consumername=victim_name)
        assert orphans
        assert r.hlen(keys.results) < n, "the job finished before the kill"
        for p in procs[1:]:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, (so, se) in zip(procs[1:], logs[1:]):
        assert p.returncode == 0, so.read_text() + se.read_text()[-3000:]
        assert "lost: 0" in so.read_text() and "requests: 200  written: 200" in so.read_text()
    took_over = "".join(se.read_text() for _, se in logs[1:])
    assert "took over" in took_over  # the orphans went through XAUTOCLAIM

    rows = _read(out)
    counts = Counter(x["id"] for x in rows)
    assert sorted(counts) == sorted(ids)  # none lost
    assert max(counts.values()) == 1      # none twice
    assert all(x["ok"] for x in rows)
    assert [x["id"] for x in rows] == ids  # in input order
    orphan_ids = {f"r{int(o['message_id'].decode().split('-')[0]) - 1}" for o in orphans}
    assert orphan_ids <= set(counts)
    # Nothing left pending, one result per request, and no key anywhere.
    assert r.xpending(keys.requests, GROUP)["pending"] == 0
    assert r.hlen(keys.results) == n
    everything = _all_redis_bytes(r)
    for secret in KEYS:
        assert secret.encode() not in everything
        assert secret.encode() not in out.read_bytes()
        for so, se in logs:
            assert secret not in so.read_text() + se.read_text()


def test_a_result_recorded_twice_keeps_the_first(redis_url: str, namespace: str) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = JobKeys(namespace)
    r.xgroup_create(keys.requests, GROUP, id="0", mkstream=True)
    r.xadd(keys.requests, {"line": 1, "request": "{}"}, id="1-0")
    r.xreadgroup(GROUP, "a", {keys.requests: ">"})
    assert r.xpending(keys.requests, GROUP)["pending"] == 1
    assert record_results(r, keys, [("1-0", "x", 1, '{"id": "x", "ok": true}')]) == 1
    # a second worker that took the entry over finishes too: its result is dropped
    assert record_results(r, keys, [("1-0", "x", 1, '{"id": "x", "ok": false}')]) == 0
    assert r.hget(keys.results, "x") == b'1:{"id": "x", "ok": true}'
    assert r.hlen(keys.results) == 1
    assert r.xpending(keys.requests, GROUP)["pending"] == 0
    assert record_results(r, keys, []) == 0


def test_resumes_a_half_loaded_job_and_takes_over_a_dead_consumer(
        redis_url: str, namespace: str, tmp_path: Path) -> None:
    """A loader died after 5 lines (its lock expired) and a worker died holding line 2:
    one new worker loads the rest, takes line 2 over and writes the whole output; run
    again, it rewrites OUT from Redis without sending anything."""
    from ipfs_accelerate_py.jobs import JobError
    from ipfs_accelerate_py.client import Client
    from ipfs_accelerate_py.config import BackendConfig, ClientConfig
    from ipfs_accelerate_py.plugins import get_plugin_manager
    from ipfs_accelerate_sim import SimConfig, Simulator

    n = 12
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_requests(inp, n)
    with open(inp, "a") as f:
        f.write("{not json\n")
    r = redis.Redis.from_url(redis_url)
    keys = JobKeys(namespace)
    installed = get_plugin_manager().backends()
    from ipfs_accelerate_py.jobs import read_batch_input

    lines, bad = read_batch_input(str(inp), installed)
    assert len(lines) == n and len(bad) == 1
    ghost = _Worker(r, keys, "ghost:1", lines[:5], None, 0.3, 4, 3600, None)
    ghost.digest = input_digest(inp)
    ghost.create_group()
    assert ghost.try_load()  # loaded 5 lines ...
    r.hdel(keys.meta, "loaded", "total")  # ... and died before saying so
    got = r.xreadgroup(GROUP, "ghost:1", {keys.requests: ">"}, count=2)
    assert [e[0] for e in got[0][1]] == [b"1-0", b"2-0"]
    record_results(r, keys, [("1-0", "r0", 1, json.dumps({"id": "r0", "ok": True, "result": {}}))])

    with Simulator(SimConfig(latency=0.001)) as sim:
        cfg = BackendConfig(name="openai", keys=[KEYS[0]], base_url=sim.url + "/openai/v1")
        with Client([cfg], ClientConfig(max_concurrency=4)) as client:
            summary = run_distributed_batch(inp, out, redis_client=r, job=namespace,
                                            consumer="w:2", client=client, installed=installed,
                                            claim_timeout=0.3, show_progress=False)
            assert summary.loaded_here and summary.claimed == 1
            assert summary.processed_here == n - 1  # r0 was already recorded
            assert (summary.total, summary.written, summary.ok, summary.bad) == (n, n, n, 1)
            assert summary.exit_code == 1  # a bad line
            assert r.xlen(keys.requests) == n  # no line added twice
            first = out.read_bytes()
            assert [x["id"] for x in _read(out)] == ids
            errors = _read(tmp_path / "out.jsonl.errors.jsonl")
            assert [e["line"] for e in errors] == [n + 1]
            out.unlink()
            again = run_distributed_batch(inp, out, redis_client=r, job=namespace,
                                          consumer="w:3", client=client, installed=installed,
                                          claim_timeout=0.3, show_progress=False)
            assert again.processed_here == 0 and not again.loaded_here
            assert out.read_bytes() == first
            # a worker given another file (or lacking a plugin) for the same job refuses
            other = tmp_path / "other.jsonl"
            _write_requests(other, n + 1)
            with pytest.raises(JobError, match="another input"):
                run_distributed_batch(other, tmp_path / "o2.jsonl", redis_client=r, job=namespace,
                                      client=client, installed=installed, show_progress=False)
            assert not (tmp_path / "o2.jsonl").exists()
        assert r.ttl(keys.results) > 0 and r.ttl(keys.requests) > 0  # the job expires
        assert not r.exists(keys.lock)


def test_unreachable_redis_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from ipfs_accelerate_py.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inp = tmp_path / "in.jsonl"
    _write_requests(inp, 2)
    monkeypatch.setenv("OPENAI_API_KEY", KEYS[0])
    code = main(["batch", str(inp), "-o", str(tmp_path / "o.jsonl"),
                 "--redis", f"redis://:hunter2pw@127.0.0.1:{port}/0"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in err
    assert "hunter2pw" not in err
    assert main(["batch", str(inp), "-o", str(tmp_path / "o.jsonl"), "--redis", "redis://x",
                 "--restart"]) == 2
    assert "--job" in capsys.readouterr().err


def test_a_request_that_kills_every_worker_is_failed_not_retried_forever(
        redis_url: str, namespace: str, tmp_path: Path) -> None:
    from ipfs_accelerate_py.jobs import read_batch_input
    from ipfs_accelerate_py.client import Client
    from ipfs_accelerate_py.config import BackendConfig, ClientConfig
    from ipfs_accelerate_py.plugins import get_plugin_manager
    from ipfs_accelerate_sim import SimConfig, Simulator

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_requests(inp, 4)
    r = redis.Redis.from_url(redis_url)
    keys = JobKeys(namespace)
    installed = get_plugin_manager().backends()
    lines, _ = read_batch_input(str(inp), installed)
    loader = _Worker(r, keys, "ghost:1", lines, None, 0.2, 4, 3600, None)
    loader.digest = input_digest(inp)
    loader.create_group()
    assert loader.try_load()
    r.xreadgroup(GROUP, "ghost:1", {keys.requests: ">"}, count=1)  # r0: delivered once ...
    for ghost in ("ghost:2", "ghost:3"):  # ... and taken over by two more that died too
        r.xclaim(keys.requests, GROUP, ghost, 0, ["1-0"])
    with Simulator(SimConfig(latency=0.001)) as sim:
        cfg = BackendConfig(name="openai", keys=[KEYS[0]], base_url=sim.url + "/openai/v1")
        with Client([cfg], ClientConfig(max_concurrency=4)) as client:
            summary = run_distributed_batch(inp, out, redis_client=r, job=namespace,
                                            consumer="w:4", client=client, installed=installed,
                                            claim_timeout=0.2, max_deliveries=3,
                                            show_progress=False)
    rows = _read(out)
    assert [x["id"] for x in rows] == ids
    assert rows[0]["ok"] is False and rows[0]["error"]["type"] == "WorkerLost"
    assert all(x["ok"] for x in rows[1:])
    assert (summary.written, summary.ok, summary.failed, summary.claimed) == (4, 3, 1, 1)
    assert r.xpending(keys.requests, GROUP)["pending"] == 0


def test_a_job_of_bad_lines_only_finishes_without_a_client(redis_url: str, namespace: str,
                                                           tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"backend": "nope", "operation": "chat", "payload": {}}\n[1]\n')
    r = redis.Redis.from_url(redis_url)

    def no_client(used: list[str]) -> None:
        raise AssertionError("no request to run")

    summary = run_distributed_batch(inp, out, redis_client=r, job=namespace, client=no_client,
                                    show_progress=False)
    assert (summary.total, summary.written, summary.bad, summary.exit_code) == (0, 0, 2, 1)
    assert out.read_text() == ""
    assert len(_read(tmp_path / "out.jsonl.errors.jsonl")) == 2
