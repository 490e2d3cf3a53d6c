"""Test helpers for backend and strategy authors (install the ``[testing]`` extra).

:class:`LocalServer` hosts a :class:`~ipfs_accelerate_py.server.ProtocolServer` on
127.0.0.1, records every request it receives, and can be scripted to answer the next
requests with canned responses (errors, 429s, cut streams) before falling back to the
protocol's own answers.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from .server import HttpServer, ServerRequest, ServerResponse

Responder = ServerResponse | Callable[[ServerRequest], ServerResponse]


class LocalServer(HttpServer):
    def __init__(self, app: Callable[[ServerRequest], ServerResponse] | None = None) -> None:
        self.protocol = app
        self.requests: list[ServerRequest] = []
        self._script: deque[Responder] = deque()
        self._lock = threading.Lock()
        super().__init__(self._dispatch)
        self.start()

    def script(self, *responses: Responder) -> LocalServer:
        """Answer the next requests with these, in order (a callable gets the request)."""
        with self._lock:
            self._script.extend(responses)
        return self

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()

    @property
    def last(self) -> ServerRequest:
        with self._lock:
            return self.requests[-1]

    def _dispatch(self, req: ServerRequest) -> ServerResponse:
        with self._lock:
            self.requests.append(req)
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted(req) if callable(scripted) else scripted
        if self.protocol is None:
            return ServerResponse.json({"error": "no protocol and nothing scripted"}, 500)
        return self.protocol(req)

    def __enter__(self) -> LocalServer:
        return self


def fake_key(n: int = 1) -> str:
    """An obviously fake key for tests."""
    return f"test-key-{n}"


__all__ = ["LocalServer", "fake_key"]
