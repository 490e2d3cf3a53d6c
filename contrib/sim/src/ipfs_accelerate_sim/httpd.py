"""A small, fast HTTP/1.1 server on asyncio (standard library only).

Why not :class:`~ipfs_accelerate_py.server.HttpServer`: it spends a thread per
connection and parses through ``http.server``; the simulator must sustain thousands of
requests per second on one core while holding slow (latency-simulating) requests open
without blocking the others.  This server uses one ``asyncio.Protocol`` per connection:
keep-alive, pipelined requests answered in order, ``Content-Length`` and chunked request
bodies, chunked streamed responses, ``Expect: 100-continue``.

The application is ``async def app(ServerRequest) -> ServerResponse``.  A streamed body
(a sync iterator of bytes) is iterated in the loop; raising
:class:`~ipfs_accelerate_py.server.CutConnection` inside it drops the connection midway.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Awaitable, Callable
from urllib.parse import parse_qs

from ipfs_accelerate_py.server import CutConnection, ServerRequest, ServerResponse

App = Callable[[ServerRequest], Awaitable[ServerResponse]]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024

_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _BadRequest(Exception):
    pass


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode("latin-1"))


class HttpProtocol(asyncio.Protocol):
    """One connection.  Parses requests from the byte stream and answers them in order."""

    def __init__(self, app: App, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.app = app
        self.on_error = on_error
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: list[tuple[ServerRequest, bool]] = []
        self.busy = False
        self.closed = False
        self._can_write: asyncio.Future | None = None
        self._continue_sent = False
        self._partial: tuple[str, str, str, dict[str, str], int, int] | None = None

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        if self._can_write is None or self._can_write.done():
            self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except _BadRequest as exc:
            self._reply_raw(400, str(exc).encode(), close=True)
            return
        if self.pending and not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve())

    # -- parsing ----------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self.buf
        while buf:
            head = self._partial
            if head is None:
                head = self._partial = self._parse_head(buf)
                if head is None:
                    return
            method, target, version, headers, pos, length = head
            if length < 0:  # chunked
                body_end, body = self._chunked(buf, pos)
                if body_end < 0:
                    self._maybe_continue(headers)
                    return
            else:
                # Only the length is checked while a large body arrives: the head is
                # parsed once, not again for every packet.
                if len(buf) - pos < length:
                    self._maybe_continue(headers)
                    return
                body = bytes(buf[pos:pos + length])
                body_end = pos + length
            del buf[:body_end]
            self._partial = None
            self._continue_sent = False
            path, _, query = target.partition("?")
            conn = headers.get("connection", "").lower()
            keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
            req = ServerRequest(method=method.upper(), path=path,
                                query=parse_qs(query, keep_blank_values=True) if query else {},
                                headers=headers, body=body)
            self.pending.append((req, keep))

    @staticmethod
    def _parse_head(buf: bytearray) -> tuple[str, str, str, dict[str, str], int, int] | None:
        """(method, target, version, headers, body offset, length or -1 for chunked), or
        None while the head is incomplete."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise _BadRequest("request head too large")
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _BadRequest("malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest("malformed header line")
            lname = name.strip().lower()
            value = value.strip()
            headers[lname] = f"{headers[lname]}, {value}" if lname in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return method, target, version, headers, end + 4, -1
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise _BadRequest("bad content-length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BadRequest("bad content-length")
        return method, target, version, headers, end + 4, length

    def _maybe_continue(self, headers: dict[str, str]) -> None:
        if (not self._continue_sent and headers.get("expect", "").lower() == "100-continue"
                and self.transport is not None):
            self._continue_sent = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    @staticmethod
    def _chunked(buf: bytearray, pos: int) -> tuple[int, bytes]:
        """(end offset, body) of a complete chunked body starting at ``pos``; (-1, b"")
        while incomplete."""
        parts: list[bytes] = []
        total = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return -1, b""
            try:
                size = int(bytes(buf[pos:eol]).split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise _BadRequest("bad chunk size") from None
            pos = eol + 2
            if size == 0:
                # trailers until an empty line
                while True:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return -1, b""
                    if eol == pos:
                        return eol + 2, b"".join(parts)
                    pos = eol + 2
            if len(buf) < pos + size + 2:
                return -1, b""
            parts.append(bytes(buf[pos:pos + size]))
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequest("body too large")
            pos += size + 2

    # -- answering --------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self.pending and not self.closed:
                req, keep = self.pending.pop(0)
                try:
                    resp = await self.app(req)
                except Exception as exc:  # a bug in a protocol server must not hang the client
                    if self.on_error is not None:
                        self.on_error(exc)
                    resp = ServerResponse.text(f"server error: {type(exc).__name__}: {exc}", 500)
                keep = await self._write(req, resp, keep)
                if not keep:
                    self.closed = True
                    if self.transport is not None:
                        self.transport.close()
                    return
        finally:
            self.busy = False
        if self.pending and not self.closed:  # arrived while we were finishing
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve())

    def _head(self, resp: ServerResponse, extra: str, keep: bool) -> bytes:
        lines = [_status_line(resp.status)]
        for k, v in resp.headers.items():
            lk = k.lower()
            if lk in ("content-length", "transfer-encoding", "connection"):
                continue
            lines.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
        lines.append(extra.encode("latin-1"))
        if not keep:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _write(self, req: ServerRequest, resp: ServerResponse, keep: bool) -> bool:
        t = self.transport
        if t is None or self.closed:
            return False
        body = resp.body
        if isinstance(body, (bytes, bytearray)):
            head = self._head(resp, f"Content-Length: {len(body)}\r\n", keep)
            t.write(head + body if req.method != "HEAD" else head)
            return keep
        t.write(self._head(resp, "Transfer-Encoding: chunked\r\n", keep))
        try:
            for chunk in body:
                if self.closed:
                    return False
                if chunk:
                    t.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if self._can_write is not None and not self._can_write.done():
                    await self._can_write
        except CutConnection:
            self.closed = True
            t.close()  # flushes what was written, then EOF without the last chunk
            return False
        t.write(b"0\r\n\r\n")
        return keep

    def _reply_raw(self, status: int, body: bytes, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(_status_line(status) + b"Content-Type: text/plain\r\n"
                             + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        if close:
            self.closed = True
            self.transport.close()


async def start_server(app: App, host: str = "127.0.0.1", port: int = 0,
                       on_error: Callable[[BaseException], None] | None = None,
                       backlog: int = 2048) -> asyncio.base_events.Server:
    """Listen on ``host:port`` (0: any free port) and serve ``app``."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpProtocol(app, on_error), host, port,
                                    backlog=backlog, reuse_address=True)
