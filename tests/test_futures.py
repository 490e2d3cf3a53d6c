"""RequestFuture behaves as a concurrent.futures.Future, also on its lock-free paths."""

from __future__ import annotations

import concurrent.futures as cf
import threading

import pytest

from ipfs_accelerate_py.futures import RequestFuture


def test_quiet_result_and_exception():
    f = RequestFuture("req_1")
    assert f.set_running_or_notify_cancel()
    f.set_result(42)
    assert f.done() and f.result() == 42 and f.exception() is None
    g = RequestFuture("req_2")
    g.set_exception(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        g.result()
    with pytest.raises(cf.InvalidStateError):
        f.set_result(1)


def test_asking_about_the_state_keeps_the_quiet_path():
    # The pipeline asks done() of every request it dispatches and settles; Future.done()
    # takes the condition, which would make it, and every result after that would notify.
    f = RequestFuture("req_1")
    assert not f.done() and not f.cancelled() and not f.running()
    assert f.set_running_or_notify_cancel()
    assert f.running() and not f.done()
    f.set_result(42)
    assert f.done() and not f.cancelled() and not f.running() and f.result() == 42
    assert "_cond" not in vars(f)  # no condition was ever made
    g = RequestFuture("req_2")
    assert g.cancel() and g.cancelled() and g.done() and not g.running()


def test_cancel_then_dispatch_is_refused():
    f = RequestFuture("req_1")
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
    assert f.cancel() and f.cancelled()
    assert not f.set_running_or_notify_cancel()
    assert seen == [True]


def test_callbacks_and_wait_work_with_quiet_completion():
    futs = [RequestFuture(f"req_{i}") for i in range(20)]
    hits = []
    futs[0].add_done_callback(lambda fut: hits.append(fut.result()))
    threading.Timer(0.05, lambda: [f.set_result(i) for i, f in enumerate(futs)]).start()
    done, pending = cf.wait(futs, timeout=5)
    assert len(done) == 20 and not pending and hits == [0]
    assert sorted(f.result() for f in cf.as_completed(futs, timeout=5)) == list(range(20))


def test_no_lost_wakeup_between_a_waiter_and_a_setter():
    # A waiter that arrives while the result is being set must never hang.
    for i in range(2000):
        f = RequestFuture(f"req_{i}")
        f.set_running_or_notify_cancel()
        box = []
        t = threading.Thread(target=lambda: box.append(f.result(timeout=5)))
        t.start()
        f.set_result(i)
        t.join(5)
        assert not t.is_alive() and box == [i]


# ---------------------------------------------------------------- across CPython versions
def _interpreters() -> dict[str, str]:
    """Every CPython >= 3.11 on this machine (PATH, pyenv), by version; always this one."""
    import glob
    import os
    import shutil
    import subprocess
    import sys

    candidates = [sys.executable]
    candidates += [p for n in ("3.11", "3.12", "3.13", "3.14") if (p := shutil.which("python" + n))]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(root, "versions", "3.1[1-9]*", "bin", "python3")))
    found: dict[str, str] = {}
    for exe in candidates:
        try:
            out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        version = out.stdout.strip()
        if out.returncode == 0 and tuple(map(int, version.split("."))) >= (3, 11):
            found.setdefault(version, exe)
    return found


INTERPRETERS = _interpreters()


@pytest.mark.parametrize("version", sorted(INTERPRETERS))
def test_request_future_matches_each_cpythons_future(version):
    """RequestFuture skips Future.__init__ and relies on Future's private attributes: the
    conformance script (standard library only) proves it on every CPython found."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).with_name("futures_conformance.py")
    out = subprocess.run([INTERPRETERS[version], str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", out.stdout.split()[1]] and out.stdout.split()[1].startswith(version)
