"""``ipfs-accelerate batch``: output lines, bad lines, failures, keys never shown, and
resuming after SIGKILL with every request exactly once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from test_cli_helpers import CLI, clean_env, read_out, run_cli, write_requests
from ipfs_accelerate_sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(latency=0.002, models={"openai": ["gpt-3.5-turbo"]})) as s:
        yield s


def _batch(sim: Simulator, inp: Path, out: Path, *extra: str, env: dict | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    return run_cli(["batch", str(inp), "-o", str(out), "--base-url", sim.url + "/openai/v1",
                    "--concurrency", "8", *extra],
                   env={"OPENAI_API_KEY": "test-key-1", **(env or {})}, timeout=timeout)


def test_batch_writes_every_result_with_its_id(sim: Simulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, 30)
    with open(inp, "a") as f:  # a line without an id gets one from its line number
        f.write(json.dumps({"backend": "openai", "operation": "embeddings",
                            "payload": {"model": "text-embedding-3-small", "input": "x"}}) + "\n")
    r = _batch(sim, inp, out)
    assert r.returncode == 0, r.stderr
    rows = read_out(out)
    assert sorted(x["id"] for x in rows) == sorted(ids + ["line-31"])
    assert all(x["ok"] for x in rows)
    chat = next(x for x in rows if x["id"] == "r0")["result"]
    assert chat["text"] and chat["usage"]["total_tokens"] > 0 and chat["raw"]["object"] == "chat.completion"
    emb = next(x for x in rows if x["id"] == "line-31")["result"]
    assert len(emb["data"][0]) > 8
    assert "requests: 31  written: 31  ok: 31  failed: 0  bad lines: 0  lost: 0" in r.stdout
    assert "openai" in r.stdout and "p50 ms" in r.stdout  # the final stats table
    assert "31/31" in r.stderr  # the progress line
    # run again: nothing to do, nothing repeated
    r2 = _batch(sim, inp, out)
    assert r2.returncode == 0 and "already done" in r2.stderr
    assert len(read_out(out)) == 31


def test_bad_lines_are_reported_and_do_not_stop_the_job(sim: Simulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(inp, 5)
    bad = [
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"backend": "nope", "operation": "chat", "payload": {}}),
        json.dumps({"backend": "openai", "operation": "fly", "payload": {}}),
        json.dumps({"id": "r1", "backend": "openai", "operation": "chat", "payload": {}}),
        json.dumps({"backend": "openai", "operation": "chat", "payload": "text"}),
        json.dumps({"backend": "openai", "operation": "chat", "payload": {}, "priority": "URGENT"}),
    ]
    with open(inp, "a") as f:
        f.write("\n".join(bad) + "\n")
    r = _batch(sim, inp, out)
    assert r.returncode == 1  # finished, but with bad lines
    assert len(read_out(out)) == 5
    errors = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [6, 7, 8, 9, 10, 11, 12]
    for e in errors:
        assert f"in.jsonl:{e['line']}:" in r.stderr
    assert "duplicate id 'r1'" in errors[4]["error"]
    assert "unknown backend 'nope'" in errors[2]["error"]
    assert "bad lines: 7" in r.stdout and "lost: 0" in r.stdout
    # resuming does not duplicate the errors file
    _batch(sim, inp, out)
    assert len((tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()) == 7


def _batch_here(sim: Simulator, inp: Path, out: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[int, str, str]:
    """The same command, run in this process (faster than a subprocess)."""
    from ipfs_accelerate_py.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code = main(["batch", str(inp), "-o", str(out), "--base-url", sim.url + "/openai/v1", *extra])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_failed_requests_are_written_once_with_their_error(sim: Simulator, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(inp, 4, model="no-such-model")
    with open(inp, "a") as f:  # refused by the backend's own checks before it is queued
        f.write(json.dumps({"id": "empty", "backend": "openai", "operation": "chat", "payload": {}}) + "\n")
    code, stdout, _ = _batch_here(sim, inp, out, capsys, monkeypatch)
    assert code == 1
    rows = {x["id"]: x for x in read_out(out)}
    assert len(rows) == 5 and not any(x["ok"] for x in rows.values())
    assert rows["r0"]["error"]["class"] == "not_found" and rows["r0"]["error"]["status"] == 404
    assert rows["empty"]["error"]["class"] == "invalid_request"
    assert "failed: 5" in stdout and "lost: 0" in stdout


def test_other_input_with_the_same_journal_is_refused(sim: Simulator, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(inp, 2)
    assert _batch_here(sim, inp, out, capsys, monkeypatch)[0] == 0
    write_requests(inp, 3)
    code, _, err = _batch_here(sim, inp, out, capsys, monkeypatch)
    assert code == 2 and "--restart" in err
    code, _, _ = _batch_here(sim, inp, out, capsys, monkeypatch, "--restart")
    assert code == 0 and len(read_out(out)) == 3


SECRETS = ("sk-canary-AAAA-1111", "sk-canary-BBBB-2222", "sk-canary-CCCC-3333")


def _assert_nowhere(paths: list[Path], *texts: str) -> None:
    for secret in SECRETS:
        for t in texts:
            assert secret not in t
        for p in paths:
            if p.exists():
                assert secret.encode() not in p.read_bytes(), p


def test_keys_are_never_printed_or_written(tmp_path: Path) -> None:
    from ipfs_accelerate_openai.server import OpenAIServer

    class Leaky(OpenAIServer):
        """Rejects one key with a message quoting it whole (worst case)."""

        def _authenticate(self, req):  # type: ignore[override]
            from ipfs_accelerate_py.server import ServerResponse

            if self.key_of(req) == SECRETS[2]:
                return ServerResponse.json({"error": {"message": f"bad key {SECRETS[2]}",
                                                      "type": "invalid_request_error",
                                                      "code": "invalid_api_key"}}, 401)
            return super()._authenticate(req)

    with Simulator(SimConfig(), servers={"openai": Leaky()}) as sim:
        inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        write_requests(inp, 12)
        env = {"OPENAI_API_KEY": SECRETS[0], "OPENAI_API_KEY_2": SECRETS[1]}
        r = _batch(sim, inp, out, env=env)
        assert r.returncode == 0, r.stderr
        from ipfs_accelerate_py.keys import key_fingerprint

        # keys appear by their keyed id only, the same id the library gives them
        assert "key-" + key_fingerprint(SECRETS[1]) in r.stdout
        journal = tmp_path / "out.jsonl.journal.sqlite3"
        files = [out, journal, Path(str(journal) + "-wal"), tmp_path / "out.jsonl.errors.jsonl"]
        _assert_nowhere(files, r.stdout, r.stderr)
        # a keys file, and a key the provider rejects while quoting it
        keys = tmp_path / "keys.json"
        keys.write_text(json.dumps({"openai": {"leaky": SECRETS[2]}}))
        out2 = tmp_path / "out2.jsonl"
        r = _batch(sim, inp, out2, "--keys-file", str(keys), "--deadline", "20", env=env)
        assert r.returncode == 1
        rows = read_out(out2)
        assert rows and all(x["error"]["class"] == "auth" for x in rows)
        assert rows[0]["error"]["message"].startswith("bad key ")  # quoted, minus the key
        _assert_nowhere([out2, tmp_path / "out2.jsonl.journal.sqlite3",
                         Path(str(tmp_path / "out2.jsonl.journal.sqlite3") + "-wal")], r.stdout, r.stderr)
        # the single-request commands too
        for args in (["chat", "-m", "gpt-4o-mini", "--json", "hi"],
                     ["chat", "-m", "gpt-4o-mini", "--keys-file", str(keys), "hi"]):
            r = run_cli([*args, "--backend", "openai", "--base-url", sim.url + "/openai/v1", "-v"], env=env)
            _assert_nowhere([], r.stdout, r.stderr)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_resume_after_sigkill_every_request_exactly_once(tmp_path: Path) -> None:
    """Kill the batch with SIGKILL at random moments (once before it wrote anything, then
    at random points past growing amounts of output, possibly mid-write), rerun until it
    finishes: every id is in OUT exactly once."""
    n = 300
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, n)
    rng = random.Random(20261126)
    thresholds = [0, 40, 110, 190, 250]
    with Simulator(SimConfig(latency=0.01, jitter=0.03, error_rate=0.05, seed=5)) as sim:
        cmd = [*CLI, "batch", str(inp), "-o", str(out), "--base-url", sim.url + "/openai/v1",
               "--concurrency", "6"]
        env = clean_env({"OPENAI_API_KEY": "test-key-1", "OPENAI_API_KEY_2": "test-key-2"})
        kills = 0
        sizes = []
        stdout = stderr = ""
        for threshold in thresholds + [None]:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env)
            if threshold is None:  # the last run goes to the end
                stdout, stderr = proc.communicate(timeout=90)
                assert proc.returncode == 0, stdout + stderr
                break
            if threshold == 0:
                time.sleep(rng.uniform(0.05, 0.4))  # during start-up
            else:
                while _lines(out) < threshold and proc.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.05))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
            sizes.append(len(read_out(out)) if out.exists() else 0)
        assert kills >= 4, "the batch finished before it could be killed"
        assert "resuming:" in stderr
    rows = read_out(out)
    counts = Counter(x["id"] for x in rows)
    assert sorted(counts) == sorted(ids)  # none lost
    assert max(counts.values()) == 1  # none repeated
    assert all(x["ok"] for x in rows)
    assert "lost: 0" in stdout
    assert sizes == sorted(sizes) and sizes[-1] >= 190  # progress kept across kills


def test_journal_recovery_cases(tmp_path: Path) -> None:
    from ipfs_accelerate_py.journal import JournalMismatch, ResumableOutput

    out, jr = tmp_path / "o.jsonl", tmp_path / "o.j"
    ro = ResumableOutput(out, jr, "d1")
    assert ro.write([("a", 1, True, b'{"id":"a"}\n'), ("b", 2, True, b'{"id":"b"}\n')]) == 2
    assert ro.write([("a", 1, True, b'{"id":"a"}\n')]) == 0  # never twice
    ro.close()
    # killed after the output write but before the journal commit: a tail without journal
    with open(out, "ab") as f:
        f.write(b'{"id":"c"}\n{"id":"d"')
    ro = ResumableOutput(out, jr, "d1")
    assert ro.truncated == len(b'{"id":"c"}\n{"id":"d"') and ro.done == {"a", "b"}
    assert out.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n'
    ro.write([("c", 3, False, b'{"id":"c"}\n')])
    ro.close()
    # OUT lost or edited: rebuilt from the journal
    out.unlink()
    ro = ResumableOutput(out, jr, "d1")
    assert ro.rebuilt and out.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n'
    ro.close()
    out.write_bytes(b'{"id":"X"}\n{"id":"b"}\n{"id":"c"}\nextra')
    ro = ResumableOutput(out, jr, "d1")
    assert out.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n'
    assert ro.journal.count() == (3, 2)
    ro.close()
    with pytest.raises(JournalMismatch):
        ResumableOutput(out, jr, "another-input")
