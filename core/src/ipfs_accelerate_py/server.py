"""The server side of a protocol: what a backend plugin's fake subclasses so that tests,
the simulator and the benchmarks can talk to something that answers like the real service.

A :class:`ProtocolServer` maps a :class:`ServerRequest` to a :class:`ServerResponse`; it
knows nothing about sockets, and this module opens none.  The hosts that put one on a
port (a threaded HTTP/1.1 server for tests, the simulator's asyncio server) live in the
simulator's own distribution, out of what a production install imports.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import attrs

from .wire.ratelimit import RateLimitInfo


class CutConnection(Exception):
    """Raise inside a streamed body to make the server drop the connection abruptly."""


@attrs.frozen
class ServerRequest:
    method: str
    path: str
    query: Mapping[str, list[str]] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)  # lower-cased names
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def bearer_token(self) -> str | None:
        auth = self.header("authorization") or ""
        return auth[7:] if auth.lower().startswith("bearer ") else None


@attrs.define
class ServerResponse:
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    #: bytes, or an iterable of bytes sent with chunked encoding (a stream).
    body: bytes | Iterable[bytes] = b""

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> ServerResponse:
        return cls(status, {"Content-Type": "application/json", **(headers or {})},
                   json.dumps(obj, separators=(",", ":")).encode("utf-8"))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain",
             headers: Mapping[str, str] | None = None) -> ServerResponse:
        return cls(status, {"Content-Type": content_type, **(headers or {})}, text.encode("utf-8"))

    @classmethod
    def stream(cls, chunks: Iterable[bytes], content_type: str = "text/event-stream",
               status: int = 200, headers: Mapping[str, str] | None = None) -> ServerResponse:
        return cls(status, {"Content-Type": content_type, **(headers or {})}, chunks)

    def with_headers(self, headers: Mapping[str, str]) -> ServerResponse:
        self.headers.update(headers)
        return self


def route(method: str, pattern: str) -> Callable[[Callable], Callable]:
    """Mark a :class:`ProtocolServer` method as the handler of ``method pattern``.

    ``{name}`` matches one path segment, ``{name:path}`` the rest of the path; matched
    values are passed as keyword arguments.
    """

    def mark(fn: Callable) -> Callable:
        fn.__dict__.setdefault("_routes", []).append((method.upper(), pattern))
        return fn

    return mark


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)(:path)?\}", pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


class ProtocolServer:
    """Answers like one provider: routes, success bodies, error bodies, 429s and streams.

    Subclasses set :attr:`name` (the backend's name) and mark handler methods with
    :func:`route`.  The simulator calls :meth:`key_of`, :meth:`rate_limited`,
    :meth:`rate_limit_headers` and :meth:`error` to apply limits and inject failures in the
    provider's own format.  Generated content is deterministic under ``seed``.
    """

    name: ClassVar[str] = ""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., ServerResponse]]] = []
        for klass in reversed(type(self).__mro__):
            for attr, fn in vars(klass).items():
                for method, pattern in getattr(fn, "_routes", ()):
                    self._routes.append((method, _compile(pattern), getattr(self, attr)))

    def __call__(self, req: ServerRequest) -> ServerResponse:
        return self.handle(req)

    def handle(self, req: ServerRequest) -> ServerResponse:
        path_matched = False
        for method, regex, fn in self._routes:
            m = regex.match(req.path)
            if m is None:
                continue
            path_matched = True
            if method == req.method:
                return fn(req, **m.groupdict())
        if path_matched:
            return self.error(req, 405, f"method {req.method} not allowed on {req.path}")
        return self.error(req, 404, f"no route {req.method} {req.path}")

    # -- hooks the simulator uses -------------------------------------------------
    def key_of(self, req: ServerRequest) -> str | None:
        """The API key a request carries (bearer token by default)."""
        return req.bearer_token()

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        """Headers describing the key's quota, sent on every answer (none by default)."""
        return {}

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        """The provider's own 429."""
        headers = self.rate_limit_headers(info)
        if info.retry_after is not None:
            headers["retry-after"] = str(max(1, int(info.retry_after + 0.999)))
        return self.error(req, 429, "rate limit exceeded").with_headers(headers)

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        """An error answer in the provider's format."""
        return ServerResponse.json({"error": {"message": message, "code": status}}, status)


def iter_chunks(parts: Iterable[bytes], cut_after: int | None = None) -> Iterator[bytes]:
    """Yield ``parts``; with ``cut_after=n``, drop the connection after n parts (tests)."""
    for i, part in enumerate(parts):
        if cut_after is not None and i >= cut_after:
            raise CutConnection()
        yield part
