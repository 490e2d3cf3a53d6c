"""The sync ``Client``'s interface over an :class:`AsyncClient` running on its own event
loop thread, so the pipeline behaviour suites written for ``Client`` run unchanged against
the asyncio driver (``tests/test_async_parity.py``).  Test-only: it blocks the calling
thread on purpose; the loop thread itself never blocks."""

from __future__ import annotations

import asyncio
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Iterable

from ipfs_accelerate_py.aio import AsyncClient, AsyncResultStream


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="async-facade",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class SyncStream:
    """A blocking iterator over an :class:`AsyncResultStream`."""

    def __init__(self, loop: _Loop, stream: AsyncResultStream) -> None:
        self._loop = loop
        self._stream = stream
        self.request_id = stream.request_id
        self.key_id = stream.key_id

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        try:
            return self._loop.run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def text(self) -> str:
        return self._stream.text

    def collect(self) -> Any:
        return self._loop.run(self._stream.collect())

    def close(self) -> None:
        self._loop.run(self._stream.aclose())

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncBackedClient:
    """``Client(...)``'s constructor and methods, driven by an ``AsyncClient``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lp = _Loop()
        try:
            self._ac = self._lp.run(self._make(args, kwargs))
        except BaseException:
            self._lp.stop()
            raise
        self.config = self._ac.config
        # The loop outlives close() (a closed client still answers, with
        # ClientClosedError), and stops with this object.
        weakref.finalize(self, self._lp.stop)

    @staticmethod
    async def _make(args: Any, kwargs: Any) -> AsyncClient:
        client = AsyncClient(*args, **kwargs)
        client._bind()
        return client

    def __getattr__(self, name: str) -> Any:  # stats, breaker_state, _s, _pipeline...
        return getattr(self._ac, name)

    def _future(self, handle: Any) -> Future:
        fut: Future = Future()
        fut.request_id = handle.request_id  # type: ignore[attr-defined]
        lp = self._lp
        cancel = fut.cancel  # Future's own

        async def relay() -> None:
            try:
                value = await handle
            except asyncio.CancelledError:
                cancel()
                return
            except BaseException as exc:
                fut.set_exception(exc)
                return
            if isinstance(value, AsyncResultStream):
                value = SyncStream(lp, value)
            if fut.set_running_or_notify_cancel():
                fut.set_result(value)

        asyncio.run_coroutine_threadsafe(relay(), lp.loop)

        async def cancel_handle() -> bool:
            return handle.cancel()

        def cancel_both() -> bool:
            # Cancelled on the loop before returning, as Future.cancel is immediate.
            return lp.run(cancel_handle()) and (cancel() or True)

        fut.cancel = cancel_both  # type: ignore[method-assign]
        return fut

    def submit(self, *args: Any, **kwargs: Any) -> Future:
        return self._future(self._lp.run(self._ac.submit(*args, **kwargs)))

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.submit(*args, **kwargs).result()

    def stream(self, *args: Any, **kwargs: Any) -> SyncStream:
        return SyncStream(self._lp, self._lp.run(self._ac.open_stream(*args, **kwargs)))

    def map(self, requests: Iterable[Any], *, return_exceptions: bool = False) -> list[Any]:
        return self._lp.run(self._ac.map(list(requests), return_exceptions=return_exceptions),
                            timeout=None)

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        self._lp.run(self._ac.aclose(wait, timeout), timeout=None)

    def __enter__(self) -> AsyncBackedClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
