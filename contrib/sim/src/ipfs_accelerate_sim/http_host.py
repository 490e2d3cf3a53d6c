"""A threaded HTTP/1.1 host for any ``ServerRequest -> ServerResponse`` callable on
127.0.0.1: keep-alive, chunked streaming, and a stream cut midway when the body raises
:class:`~ipfs_accelerate_py.server.CutConnection` (tests).  The test kit's
:class:`~ipfs_accelerate_sim.testing.LocalServer` is one.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from ipfs_accelerate_py.server import CutConnection, ServerRequest, ServerResponse


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


__all__ = ["HttpServer"]
