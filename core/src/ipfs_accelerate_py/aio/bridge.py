"""Run the pipeline's synchronous stages on the event loop, awaiting where they do I/O.

The stages (:mod:`ipfs_accelerate_py.pipeline`) and every backend plugin are plain
functions that call ``transport.send(...)`` and read response bodies.  :func:`run_sync`
runs such a function in a greenlet on the loop's own thread; when it reaches I/O, the
async transport calls :func:`await_`, which switches back to the coroutine, awaits there,
and switches in again with the answer.  So one stage code serves both drivers, a backend
written for the sync client works unchanged, and no thread is held per request (the way
SQLAlchemy's asyncio layer drives its synchronous core).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


class _Bridge(greenlet):  # type: ignore[misc]
    """A greenlet running synchronous pipeline code for :func:`run_sync`."""


def await_(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` from synchronous code run by :func:`run_sync`."""
    current = getcurrent()
    if not isinstance(current, _Bridge):
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning on top of this error
        raise RuntimeError("ipfs-accelerate: async I/O from synchronous code outside the "
                           "AsyncClient's driver (use the sync Client and Transport there)")
    return current.parent.switch(awaitable)  # type: ignore[no-any-return]


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on this thread; each :func:`await_` inside it is awaited here.
    An exception (cancellation included) raised while awaiting is thrown into ``fn`` at
    its ``await_``, so its own handlers run as they would around a blocking call."""
    g = _Bridge(fn, getcurrent())
    value: Any = g.switch(*args)
    while not g.dead:
        try:
            result = await value
        except BaseException as exc:
            value = g.throw(exc)
        else:
            value = g.switch(result)
    return value  # type: ignore[no-any-return]
