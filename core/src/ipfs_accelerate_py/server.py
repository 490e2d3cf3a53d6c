"""The server side of a protocol: what a backend plugin supplies so that tests, the
simulator and the benchmarks can talk to something that answers like the real service.

A :class:`ProtocolServer` maps a :class:`ServerRequest` to a :class:`ServerResponse`; it
knows nothing about sockets.  :class:`HttpServer` hosts any such callable on 127.0.0.1 with
HTTP/1.1 keep-alive and chunked streaming (and can cut a stream midway, for tests).
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        req = ServerRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            resp = self.server.app(req)
        except Exception as exc:  # a bug in a protocol server must not hang the client
            resp = ServerResponse.text(f"server error: {type(exc).__name__}: {exc}", 500)
        self._write(resp)

    def _write(self, resp: ServerResponse) -> None:
        self.send_response_only(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        body = resp.body
        if isinstance(body, (bytes, bytearray)):
            if "content-length" not in {k.lower() for k in resp.headers}:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in body:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except CutConnection:
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    app: Callable[[ServerRequest], ServerResponse]

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # the client went away (a deadline, a closed stream): not a server bug
        super().handle_error(request, client_address)


class HttpServer:
    """Host a ``ServerRequest -> ServerResponse`` callable on 127.0.0.1 in a thread.

    >>> with HttpServer(app) as srv:
    ...     requests.get(srv.url + "/health")
    """

    def __init__(self, app: Callable[[ServerRequest], ServerResponse], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.app = app
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def app(self) -> Callable[[ServerRequest], ServerResponse]:
        return self._server.app

    def start(self) -> HttpServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"http-server-{self.port}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iter_chunks(parts: Iterable[bytes], cut_after: int | None = None) -> Iterator[bytes]:
    """Yield ``parts``; with ``cut_after=n``, drop the connection after n parts (tests)."""
    for i, part in enumerate(parts):
        if cut_after is not None and i >= cut_after:
            raise CutConnection()
        yield part
