"""The command line under hostile input and a hostile environment: it never destroys the
input or a file it did not write, never shows a traceback, and every problem the user can
fix is one line with exit status 2 (resumable where that makes sense)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from test_cli_helpers import CLI, clean_env, read_out, run_cli, write_requests
from test_cli_helpers import main_in_process as _main
from ipfs_accelerate_sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(latency=0.002)) as s:
        yield s


def _batch(sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           inp: Path, out: Path | str, *extra: str) -> tuple[int, str, str]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    return _main(["batch", str(inp), "-o", str(out), "--base-url", sim.url + "/openai/v1",
                  *extra], capsys)


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ 20.1 the output
def test_an_existing_output_without_a_journal_is_not_overwritten(sim, capsys, monkeypatch,
                                                                 tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "precious.txt"
    ids = write_requests(inp, 3)
    out.write_text("my thesis\n")
    code, _, err = _batch(sim, capsys, monkeypatch, inp, out)
    _one_line_error(code, err, "exists", "--force")
    assert out.read_text() == "my thesis\n"
    assert not Path(f"{out}.journal.sqlite3").exists()
    # the same for an existing errors file
    errors = tmp_path / "notes.txt"
    errors.write_text("notes\n")
    code, _, err = _batch(sim, capsys, monkeypatch, inp, tmp_path / "new.jsonl", "--errors", str(errors))
    _one_line_error(code, err, "errors file", "--force")
    assert errors.read_text() == "notes\n"
    # --force overwrites it
    code, _, err = _batch(sim, capsys, monkeypatch, inp, out, "--force")
    assert code == 0, err
    assert sorted(x["id"] for x in read_out(out)) == sorted(ids)


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
@pytest.mark.parametrize("option", ["-o", "--errors", "--journal"])
def test_the_input_is_never_written(sim, capsys, monkeypatch, tmp_path: Path, how: str,
                                    option: str) -> None:
    inp = tmp_path / "in.jsonl"
    write_requests(inp, 3)
    before = _digest(inp)
    if how == "same path":
        target = str(inp)
    elif how == "relative path":
        monkeypatch.chdir(tmp_path)
        target = "./sub/../in.jsonl"
        (tmp_path / "sub").mkdir()
    elif how == "symlink":
        target = str(tmp_path / "link.jsonl")
        os.symlink(inp, target)
    else:
        target = str(tmp_path / "hard.jsonl")
        os.link(inp, target)
    args = (["-o", target] if option == "-o" else
            ["-o", str(tmp_path / "out.jsonl"), option, target])
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code, _, err = _main(["batch", str(inp), *args, "--base-url", sim.url + "/openai/v1",
                          "--force", "--restart"], capsys)
    _one_line_error(code, err, "is the input file")
    assert _digest(inp) == before


# ------------------------------------------------------------------ 20.2 deep nesting
def test_a_deeply_nested_line_is_a_bad_line(sim, capsys, monkeypatch, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, 4)
    with open(inp, "a") as f:
        f.write('{"backend": "openai", "operation": "chat", "payload": ' + "[" * 6000 + "]" * 6000 + "}\n")
        f.write("[" * 100_000 + "\n")  # not even closed
        f.write(json.dumps({"id": "deep-200", "backend": "openai", "operation": "chat",
                            "payload": {"messages": [{"role": "user", "content": "x"}],
                                        "x": json.loads("[" * 200 + "]" * 200)}}) + "\n")
    code, out_text, err = _batch(sim, capsys, monkeypatch, inp, out)
    assert code == 1 and "Traceback" not in err
    assert sorted(x["id"] for x in read_out(out)) == sorted(ids)
    errors = [json.loads(x) for x in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [5, 6, 7]
    assert all("nested deeper than" in e["error"] for e in errors)
    assert "bad lines: 3" in out_text


# ------------------------------------------------------------------ 20.3 the environment
@pytest.mark.parametrize("case", ["missing directory", "a directory", "unwritable"])
@pytest.mark.parametrize("option", ["-o", "--errors", "--journal"])
def test_unusable_paths_are_one_line_errors(sim, capsys, monkeypatch, tmp_path: Path, case: str,
                                           option: str) -> None:
    inp = tmp_path / "in.jsonl"
    write_requests(inp, 2)
    bad = {"missing directory": str(tmp_path / "nowhere" / "x.jsonl"),
           "a directory": str(tmp_path),
           "unwritable": "/sys/ipfs-accelerate-test.jsonl"}[case]
    args = ["-o", bad] if option == "-o" else ["-o", str(tmp_path / "out.jsonl"), option, bad]
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code, _, err = _main(["batch", str(inp), *args, "--base-url", sim.url + "/openai/v1"], capsys)
    _one_line_error(code, err, {"missing directory": "does not exist", "a directory": "is a directory",
                                "unwritable": "ermission denied"}[case])


def test_a_corrupt_journal_is_a_one_line_error(sim, capsys, monkeypatch, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(inp, 2)
    journal = Path(f"{out}.journal.sqlite3")
    journal.write_bytes(b"this is not SQLite" * 100)
    code, _, err = _batch(sim, capsys, monkeypatch, inp, out)
    _one_line_error(code, err, "journal", "--restart")
    assert journal.read_bytes() == b"this is not SQLite" * 100  # evidence kept
    code, _, err = _batch(sim, capsys, monkeypatch, inp, out, "--restart")
    assert code == 0, err


def test_a_full_disk_stops_cleanly_and_resumes(sim, capsys, monkeypatch, tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: the run stops with one line, journals
    nothing it did not write, and the same job (same journal) finishes elsewhere."""
    inp = tmp_path / "in.jsonl"
    ids = write_requests(inp, 5)
    journal = tmp_path / "job.journal"
    extra = ["--journal", str(journal), "--errors", str(tmp_path / "e.jsonl")]
    code, _, err = _batch(sim, capsys, monkeypatch, inp, "/dev/full", *extra)
    _one_line_error(code, err, "No space left on device", "run the same command again")
    from ipfs_accelerate_py.journal import Journal

    j = Journal(journal)
    assert j.count() == (0, 0)
    j.close()
    out = tmp_path / "out.jsonl"
    code, _, err = _batch(sim, capsys, monkeypatch, inp, out, *extra)
    assert code == 0, err
    assert sorted(x["id"] for x in read_out(out)) == sorted(ids)


def test_two_runs_on_one_output_do_not_share_it(sim, capsys, monkeypatch, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, 3)
    with open(f"{out}.journal.sqlite3.lock", "w") as held:  # what a running batch holds
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = _batch(sim, capsys, monkeypatch, inp, out)
        _one_line_error(code, err, "another run is writing")
        assert not out.exists()
    code, _, err = _batch(sim, capsys, monkeypatch, inp, out)  # released: runs
    assert code == 0, err
    assert sorted(x["id"] for x in read_out(out)) == sorted(ids)


def test_two_concurrent_processes_leave_no_duplicate(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, 40)
    with Simulator(SimConfig(latency=0.02)) as s:
        cmd = [*CLI, "batch", str(inp), "-o", str(out), "--base-url", s.url + "/openai/v1",
               "--concurrency", "2"]
        env = clean_env({"OPENAI_API_KEY": "test-key-1"})
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    for _, err in outs:
        assert "Traceback" not in err
    assert codes[0] == 0 and codes[1] in (0, 2)  # the second waits its turn or is refused
    if codes[1] == 2:
        # Refused with one line, for the one reason there is (another run holds the lock;
        # the path checks no longer race the run creating the journal, see below).
        refused = [e for _, e in outs if "ipfs-accelerate batch:" in e]
        assert len(refused) == 1 and "another run is writing" in refused[0], outs
        assert len(refused[0].strip().splitlines()) == 1, outs
    counts = Counter(x["id"] for x in read_out(out))
    assert sorted(counts) == sorted(ids) and max(counts.values()) == 1


def test_checking_paths_never_touches_a_file_another_run_is_creating(tmp_path: Path) -> None:
    # The cause of a once-seen refusal of the second of two concurrent runs: the path
    # checks (made before the run's lock) created and removed a missing OUT or journal to
    # probe it, racing the run that holds the lock while it created the same file.  Now
    # the checks leave the named paths alone, so a run creating its journal and output
    # while another process checks the same paths always keeps both.
    import threading

    from ipfs_accelerate_py.cli.batch import check_writable
    from ipfs_accelerate_py.journal import ResumableOutput

    inp = tmp_path / "in.jsonl"
    inp.write_text("{}\n")
    for i in range(40):
        out, journal = tmp_path / f"out{i}.jsonl", tmp_path / f"out{i}.journal.sqlite3"
        stop = threading.Event()
        problems: list[BaseException] = []

        def checker() -> None:
            while not stop.is_set():
                try:
                    check_writable(out, "output", inp)
                    check_writable(journal, "journal", inp)
                except BaseException as exc:  # noqa: BLE001 - any refusal is the bug
                    problems.append(exc)
                    return

        t = threading.Thread(target=checker)
        t.start()
        try:
            output = ResumableOutput(out, journal, "digest", str(inp))
            output.write([(f"r{i}", 1, True, b'{"ok": true}\n')])
            output.close()
        finally:
            stop.set()
            t.join()
        assert problems == []
        assert out.read_bytes() == b'{"ok": true}\n'
        reopened = ResumableOutput(out, journal, "digest", str(inp))
        assert reopened.done == {f"r{i}"}
        reopened.close()


def test_a_redis_url_that_is_not_redis(tmp_path: Path, capsys, monkeypatch) -> None:
    inp = tmp_path / "in.jsonl"
    write_requests(inp, 2)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code, _, err = _main(["batch", str(inp), "-o", str(tmp_path / "o.jsonl"), "--redis",
                          "http://user:test-pass-1@127.0.0.1:1/"], capsys)
    _one_line_error(code, err, "not a Redis URL", "redis://")
    assert "test-pass-1" not in err


def test_a_keys_file_that_is_not_utf8(sim, tmp_path: Path, capsys, monkeypatch) -> None:
    inp = tmp_path / "in.jsonl"
    write_requests(inp, 2)
    keys = tmp_path / "keys.txt"
    keys.write_bytes(b"test-key-\xff\xfe\n")
    code, _, err = _main(["batch", str(inp), "-o", str(tmp_path / "o.jsonl"), "--keys-file",
                          str(keys)], capsys)
    _one_line_error(code, err, "not UTF-8")
    code, _, err = _main(["chat", "-b", "openai", "-m", "m", "--keys-file", str(keys), "hi"], capsys)
    _one_line_error(code, err, "not UTF-8")


def test_sim_on_an_impossible_or_taken_port(capsys) -> None:
    code, _, err = _main(["sim", "--port", "99999"], capsys)
    _one_line_error(code, err, "--port", "99999")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = run_cli(["sim", "--port", str(taken.getsockname()[1])], timeout=30)
    _one_line_error(r.returncode, r.stderr, "cannot listen on")


def test_sigterm_stops_cleanly_and_the_job_resumes(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, 120)
    with Simulator(SimConfig(latency=0.03)) as s:
        cmd = [*CLI, "batch", str(inp), "-o", str(out), "--base-url", s.url + "/openai/v1",
               "--concurrency", "2"]
        env = clean_env({"OPENAI_API_KEY": "test-key-1"})
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        give_up = time.monotonic() + 60  # only so a broken run cannot hang the suite
        while (not out.exists() or out.read_bytes().count(b"\n") < 10) and time.monotonic() < give_up:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "stopped (SIGTERM)" in err and "Traceback" not in err
        partial = Counter(x["id"] for x in read_out(out))
        assert 10 <= len(partial) < len(ids) and max(partial.values()) == 1
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "resuming:" in r.stderr
    counts = Counter(x["id"] for x in read_out(out))
    assert sorted(counts) == sorted(ids) and max(counts.values()) == 1


# ------------------------------------------------------------------ 20.10 numbers
@pytest.mark.parametrize("args,option", [
    (["batch", "in.jsonl", "-o", "o.jsonl", "--concurrency", "0"], "--concurrency"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--concurrency", "-5"], "--concurrency"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--concurrency", "2.5"], "--concurrency"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--rpm", "0"], "--rpm"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--rpm", "nan"], "--rpm"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--deadline", "0"], "--deadline"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--deadline", "inf"], "--deadline"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--timeout", "-1"], "--timeout"),
    (["batch", "in.jsonl", "-o", "o.jsonl", "--per-key-concurrency", "0"], "--per-key-concurrency"),
    (["chat", "-b", "openai", "--max-tokens", "0", "hi"], "--max-tokens"),
    (["demo", "--requests", "-5"], "--requests"),
    (["demo", "--error-rate", "2"], "--error-rate"),
    (["sim", "--rps", "0"], "--rps"),
    (["sim", "--port", "-1"], "--port"),
])
def test_impossible_numbers_on_the_command_line_are_refused(args: list[str], option: str,
                                                            capsys) -> None:
    code, _, err = _main(args, capsys)
    _one_line_error(code, err, option)


def test_explicit_options_reach_the_configs_unchanged() -> None:
    import argparse

    from ipfs_accelerate_py.jobs import backend_config_from_options, client_config_from_options

    opts = argparse.Namespace(concurrency=3, deadline=7.5, rpm=30.0, tpm=None, timeout=4.0,
                              per_key_concurrency=2, strategy=None)
    cc = client_config_from_options(opts)
    assert (cc.max_concurrency, cc.default_deadline) == (3, 7.5)
    bc = backend_config_from_options("openai", ["test-key-1"], opts, "http://127.0.0.1:1/v1")
    assert (bc.requests_per_minute, bc.read_timeout, bc.max_concurrent_per_key) == (30.0, 4.0, 2)


# ------------------------------------------------------------------ 13.9 chat
def test_chat_verbose_without_streaming_prints_usage(sim, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    base = ["chat", "-b", "openai", "--base-url", sim.url + "/openai/v1", "-m", "gpt-4o-mini", "-v"]
    code, out, err = _main([*base, "--no-stream", "hello"], capsys)
    assert code == 0, err
    assert out.strip() and "usage: " in err and "completion tokens" in err
    code, out2, err2 = _main([*base, "hello"], capsys)  # the streamed branch says the same
    assert code == 0 and out2 == out
    assert [x for x in err2.splitlines() if x.startswith("usage:")] == \
           [x for x in err.splitlines() if x.startswith("usage:")]


def test_chat_without_a_model_is_a_usage_error_and_sends_nothing(sim, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    before = sim.stats()["requests"]
    code, _, err = _main(["chat", "-b", "openai", "--base-url", sim.url + "/openai/v1", "hi"], capsys)
    _one_line_error(code, err, "model")
    assert sim.stats()["requests"] == before


# ------------------------------------------------------------------ everything at once
HOSTILE_LINES = [
    b"{not json",
    b"\xff\xfe\x00 binary junk \x80",
    json.dumps(["a", "list"]).encode(),
    b"null",
    b'"a string"',
    json.dumps({"backend": "nope", "operation": "chat", "payload": {}}).encode(),
    json.dumps({"backend": "openai", "operation": "fly", "payload": {}}).encode(),
    json.dumps({"id": "r1", "backend": "openai", "operation": "chat", "payload": {}}).encode(),
    json.dumps({"backend": "openai", "operation": "chat", "payload": "text"}).encode(),
    json.dumps({"backend": "openai", "operation": "chat", "payload": {}, "priority": "URGENT"}).encode(),
    json.dumps({"id": True, "backend": "openai", "operation": "chat", "payload": {}}).encode(),
    json.dumps({"id": {"x": 1}, "backend": "openai", "operation": "chat", "payload": {}}).encode(),
    b'{"backend": "openai", "operation": "chat", "payload": ' + b"[" * 6000 + b"]" * 6000 + b"}",
    b"[" * 200_000,
    b'{"backend": "openai", "operation": "chat", "payload": {"x": 1e999999}}',
    b'{"id": "\\ud800", "backend": 1, "operation": "chat"}',
    b'{"backend": "openai", "operation": "chat", "payload": {"x": NaN}}',
    b'{"id": "\\udc80", "backend": "openai", "operation": "chat", "payload": {}}',
]


def test_hostile_input_batch(tmp_path: Path) -> None:
    """Every hostile case in one input, and every way of pointing OUT at it: the input is
    never changed, every good line is done exactly once, no traceback anywhere."""
    inp = tmp_path / "in.jsonl"
    ids = write_requests(inp, 20)
    good = inp.read_bytes().splitlines()
    body = []
    for i, line in enumerate(good):
        body.append(line)
        if i < len(HOSTILE_LINES):
            body.append(HOSTILE_LINES[i])
    body.append(b"")  # blank lines are skipped
    inp.write_bytes(b"\n".join(body) + b"\n")
    before = _digest(inp)
    os.symlink(inp, tmp_path / "link.jsonl")
    os.link(inp, tmp_path / "hard.jsonl")
    (tmp_path / "precious.jsonl").write_text("keep me\n")
    with Simulator(SimConfig(latency=0.002, error_rate=0.0)) as s:
        def run(*args: str) -> subprocess.CompletedProcess:
            return run_cli(["batch", str(inp), "--base-url", s.url + "/openai/v1", *args],
                           env={"OPENAI_API_KEY": "test-key-1"}, timeout=120)

        refused = [run("-o", str(inp)), run("-o", str(tmp_path / "link.jsonl"), "--force"),
                   run("-o", str(tmp_path / "hard.jsonl"), "--restart"),
                   run("-o", str(tmp_path / "o.jsonl"), "--errors", str(inp)),
                   run("-o", str(tmp_path / "o.jsonl"), "--journal", str(tmp_path / "link.jsonl")),
                   run("-o", str(tmp_path / "precious.jsonl")),
                   run("-o", str(tmp_path / "no" / "dir.jsonl")),
                   run("-o", str(tmp_path)),
                   run("-o", str(tmp_path / "o.jsonl"), "--concurrency", "0")]
        for r in refused:
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert (tmp_path / "precious.jsonl").read_text() == "keep me\n"
        assert _digest(inp) == before
        out = tmp_path / "out.jsonl"
        r = run("-o", str(out), "--concurrency", "4")
        again = run("-o", str(out), "--concurrency", "4")
    assert _digest(inp) == before
    for res in (r, again):
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    rows = read_out(out)
    counts = Counter(x["id"] for x in rows)
    assert sorted(counts) == sorted(ids) and max(counts.values()) == 1
    assert all(x["ok"] for x in rows)
    errors = [json.loads(x) for x in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    assert len(errors) == len(HOSTILE_LINES)
    assert f"bad lines: {len(HOSTILE_LINES)}" in r.stdout and "lost: 0" in r.stdout
    assert "already done" in again.stderr
