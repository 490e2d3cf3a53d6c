"""RequestFuture against the running interpreter's concurrent.futures.Future.

RequestFuture skips ``Future.__init__`` and makes the condition, waiter and callback lists
on first use, so it depends on which attributes CPython's Future keeps.  This script needs
only the standard library: ``tests/test_futures.py`` runs it under every CPython from 3.11
(the oldest we support) found on the machine, so a release that changes those internals
fails here instead of in production.  Exit status 0 and ``ok`` on success.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import sys
import threading
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "core" / "src" / "ipfs_accelerate_py" / "futures.py"
spec = importlib.util.spec_from_file_location("request_futures", SOURCE)
assert spec is not None and spec.loader is not None
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
RequestFuture = mod.RequestFuture

# 1. The attributes Future.__init__ makes are exactly the ones RequestFuture provides.
plain = set(vars(cf.Future()))
assert plain == {"_condition", "_state", "_result", "_exception", "_waiters",
                 "_done_callbacks"}, f"Future's attributes changed: {sorted(plain)}"

# 2. Quiet paths (nobody waiting): result, exception, states.
f = RequestFuture("req_1")
assert not f.done() and not f.running()
assert f.set_running_or_notify_cancel() and f.running()
f.set_result(42)
assert f.done() and f.result() == 42 and f.exception() is None
try:
    f.set_result(1)
    raise AssertionError("a finished future accepted a second result")
except cf.InvalidStateError:
    pass
g = RequestFuture("req_2")
g.set_exception(ValueError("boom"))
try:
    g.result()
    raise AssertionError("no exception raised")
except ValueError as exc:
    assert str(exc) == "boom"

# 3. Cancel, callbacks, wait, as_completed, result with a timeout.
c = RequestFuture("req_3")
seen: list[bool] = []
c.add_done_callback(lambda fut: seen.append(fut.cancelled()))
assert c.cancel() and c.cancelled() and not c.set_running_or_notify_cancel() and seen == [True]
t = RequestFuture("req_4")
try:
    t.result(timeout=0.01)
    raise AssertionError("result() returned before a result")
except cf.TimeoutError:
    pass
futs = [RequestFuture(f"req_{i}") for i in range(20)]
hits: list[int] = []
futs[0].add_done_callback(lambda fut: hits.append(fut.result()))
setter = threading.Thread(target=lambda: [x.set_result(i) for i, x in enumerate(futs)])
setter.start()
done, pending = cf.wait(futs, timeout=10)
setter.join(10)
assert len(done) == 20 and not pending and hits == [0]
assert sorted(x.result() for x in cf.as_completed(futs, timeout=10)) == list(range(20))

# 4. No lost wake-up between a waiter and a setter arriving together.
for i in range(2000):
    w = RequestFuture(f"req_w{i}")
    w.set_running_or_notify_cancel()
    box: list[int] = []
    waiter = threading.Thread(target=lambda: box.append(w.result(timeout=10)))
    waiter.start()
    w.set_result(i)
    waiter.join(10)
    assert not waiter.is_alive() and box == [i], i

print("ok", sys.version.split()[0])
