"""``batch --cache PATH`` and ``ipfs-accelerate cache stats|clear|export``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from test_cli_helpers import read_out, run_cli, write_requests
from ipfs_accelerate_sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(latency=0.001, models={"openai": ["gpt-4o-mini"]})) as s:
        yield s


def _batch(sim, inp: Path, out: Path, cache: Path) -> None:
    r = run_cli(["batch", str(inp), "-o", str(out), "--base-url", sim.url + "/openai/v1",
                 "--concurrency", "4", "--cache", str(cache)], env={"OPENAI_API_KEY": "test-key-1"})
    assert r.returncode == 0, r.stderr


def _sim_requests(sim) -> int:
    return sum(b.get("requests", 0) for b in sim.stats().get("backends", {}).values())


def test_a_rerun_is_answered_from_the_cache_file(sim, tmp_path):
    inp, cache = tmp_path / "in.jsonl", tmp_path / "cache.sqlite3"
    write_requests(inp, 20)
    before = _sim_requests(sim)
    _batch(sim, inp, tmp_path / "out1.jsonl", cache)
    assert _sim_requests(sim) - before == 20
    first = {x["id"]: x["result"] for x in read_out(tmp_path / "out1.jsonl")}
    assert not any("cache" in r for r in first.values())
    _batch(sim, inp, tmp_path / "out2.jsonl", cache)  # a new output: every request again
    assert _sim_requests(sim) - before == 20  # ... and not one reached the provider
    second = {x["id"]: x["result"] for x in read_out(tmp_path / "out2.jsonl")}
    assert {k: v["text"] for k, v in second.items()} == {k: v["text"] for k, v in first.items()}
    assert all(v["cache"]["kind"] == "exact" and v["attempts"] == 0 for v in second.values())

    r = run_cli(["cache", "stats", "--cache", str(cache)])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["entries"] == 20

    r = run_cli(["cache", "export", "--cache", str(cache), "-o", str(tmp_path / "x.jsonl")])
    assert r.returncode == 0 and "exported 20 entries" in r.stderr
    rows = read_out(tmp_path / "x.jsonl")
    assert {x["result"]["text"] for x in rows} == {v["text"] for v in first.values()}
    assert all(x["namespace"] == "default" and x["model"] == "gpt-4o-mini" for x in rows)
    assert "test-key-1" not in (tmp_path / "x.jsonl").read_text()

    # a damaged row is skipped by export and is a miss for a run
    db = sqlite3.connect(cache)
    db.execute("UPDATE entries SET body = X'00' WHERE key = ?", (rows[0]["key"],))
    db.commit()
    db.close()
    r = run_cli(["cache", "export", "--cache", str(cache)])
    assert r.returncode == 0 and "exported 19 entries (1 damaged, skipped)" in r.stderr
    assert len(r.stdout.splitlines()) == 19

    r = run_cli(["cache", "clear", "--cache", str(cache), "--model", "nope"])
    assert r.stdout.strip() == "deleted 0 entries"
    r = run_cli(["cache", "clear", "--cache", str(cache), "--older-than", "3600"])
    assert r.stdout.strip() == "deleted 0 entries"
    r = run_cli(["cache", "clear", "--cache", str(cache), "--model", "gpt-4o-mini"])
    assert r.stdout.strip() == "deleted 20 entries"


def test_cache_command_errors_are_one_line(tmp_path):
    r = run_cli(["cache", "stats", "--cache", str(tmp_path / "missing.sqlite3")])
    assert r.returncode == 2 and "no cache file at" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database at all" * 100)
    r = run_cli(["cache", "stats", "--cache", str(tmp_path / "junk.sqlite3")])
    assert r.returncode == 2 and "cannot open the cache" in r.stderr
    r = run_cli(["cache", "stats"], env={"IPFS_ACCELERATE_CACHE": ""})
    assert r.returncode == 2 and "name the cache" in r.stderr
