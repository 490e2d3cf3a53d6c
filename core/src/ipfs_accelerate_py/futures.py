"""The future :meth:`Client.submit <ipfs_accelerate_py.client.Client.submit>` returns."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

_COND_LOCK = threading.Lock()
_CANCELLED = frozenset({"CANCELLED", "CANCELLED_AND_NOTIFIED"})
_DONE = _CANCELLED | {"FINISHED"}


class RequestFuture(Future):
    """The ``concurrent.futures.Future`` that :meth:`Client.submit` returns, plus the
    request's id.  Its condition variable is made on first use: a queue of 100 000
    requests would otherwise hold 100 000 idle locks (~1.4 kB each).

    It skips ``Future.__init__`` and stands in for the attributes that makes (``_condition``,
    ``_waiters``, ``_done_callbacks``, ``_state``, ``_result``, ``_exception``): CPython
    internals, identical in 3.11, 3.12 and 3.13.  ``tests/futures_conformance.py`` checks
    them and the Future behaviour on every CPython >= 3.11 found on the machine."""

    def __init__(self, request_id: str) -> None:  # no super().__init__: it would make the lock
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self.request_id = request_id
        self._job: Any = None
        self._on_cancel: Any = None

    def cancel(self) -> bool:
        """Cancel a request that has not started; it leaves the queue at once."""
        cancelled = super().cancel()
        if cancelled and self._on_cancel is not None:
            self._on_cancel(self)
        return cancelled

    # While nobody waits on the future and no callback is attached (no condition made
    # yet: the usual case when ``Client.call`` runs the request on its own thread), a
    # state change needs no condition at all.  The choice is made under _COND_LOCK, which
    # also guards making the condition, so a waiter arriving at the same moment either
    # finds the new state or is notified by the ordinary path.
    def _quiet(self) -> bool:
        return "_cond" not in self.__dict__ and not self.__dict__.get("_callback_list")

    def set_running_or_notify_cancel(self) -> bool:
        with _COND_LOCK:
            if self._quiet() and self._state == "PENDING":
                self._state = "RUNNING"
                return True
        return super().set_running_or_notify_cancel()

    def set_result(self, result: Any) -> None:
        with _COND_LOCK:
            if self._quiet() and self._state in ("PENDING", "RUNNING"):
                self._result = result
                self._state = "FINISHED"
                return
        super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        with _COND_LOCK:
            if self._quiet() and self._state in ("PENDING", "RUNNING"):
                self._exception = exception
                self._state = "FINISHED"
                return
        super().set_exception(exception)

    # Future's done()/cancelled()/running() read the state under the condition, which
    # would make the condition (and then every state change takes the notifying path)
    # for each request the pipeline merely checks.  Reading one attribute is atomic; the
    # answer is a point-in-time one either way.
    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in _CANCELLED

    def running(self) -> bool:
        return self._state == "RUNNING"

    def result(self, timeout: float | None = None) -> Any:
        if self._state == "FINISHED":  # final: no lock needed to read it
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout)

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self.__dict__.get("_cond")
        if cond is None:
            with _COND_LOCK:
                cond = self.__dict__.get("_cond")
                if cond is None:
                    cond = self.__dict__["_cond"] = threading.Condition()
        return cond

    # Future's waiter and callback lists, likewise made on first use.
    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        return self._lazy_list("_waiter_list")

    @property
    def _done_callbacks(self) -> list[Any]:  # type: ignore[override]
        return self._lazy_list("_callback_list")

    def _lazy_list(self, name: str) -> list[Any]:
        value = self.__dict__.get(name)
        if value is None:
            with _COND_LOCK:
                value = self.__dict__.get(name)
                if value is None:
                    value = self.__dict__[name] = []
        return value
