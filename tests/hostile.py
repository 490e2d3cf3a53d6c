"""A raw-socket HTTP server on 127.0.0.1 for hostile-server tests: each connection's
request is read, then a behaviour function writes whatever bytes it likes (a body that
drips, never ends, is cut, or is a gzip bomb).  Every behaviour stops by itself within
``max_seconds``, and :meth:`RawServer.close` stops it at once."""

from __future__ import annotations

import socket
import threading
import time
import zlib
from typing import Callable

Behaviour = Callable[["Conn"], None]


class Conn:
    """One accepted connection, as seen by a behaviour."""

    def __init__(self, sock: socket.socket, index: int, stop: threading.Event,
                 until: float) -> None:
        self.sock = sock
        self.index = index  # 0 for the first connection's request, 1 for the next...
        self._stop = stop
        self._until = until

    @property
    def alive(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._until

    def send(self, data: bytes) -> bool:
        """Write ``data``; False once the client went away or the server is stopping."""
        if not self.alive:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def pause(self, seconds: float) -> bool:
        return not self._stop.wait(seconds) and self.alive


class RawServer:
    def __init__(self, behaviour: Behaviour, max_seconds: float = 30.0) -> None:
        self.behaviour = behaviour
        self.max_seconds = max_seconds
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, sock: socket.socket) -> None:
        sock.settimeout(0.1)
        with sock:
            while not self._stop.is_set():
                head = _read_request(sock, self._stop)
                if head is None:
                    return
                with self._lock:
                    self.requests.append(head)
                    index = len(self.requests) - 1
                conn = Conn(sock, index, self._stop, time.monotonic() + self.max_seconds)
                try:
                    keep = self.behaviour(conn)
                except OSError:
                    return
                if not keep:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)


def _read_request(sock: socket.socket, stop: threading.Event) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            part = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            if stop.is_set():
                return None
            continue
        except OSError:
            return None
        if not part:
            return None
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        try:
            part = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            if stop.is_set():
                return None
            continue
        if not part:
            return None
        body += part
    return head


def response_head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_response(body: bytes, status: str = "200 OK", **headers: str) -> bytes:
    return response_head(status, content_type="application/json",
                         content_length=str(len(body)), **headers) + body


def gzip_bomb(size: int) -> bytes:
    """A gzip body of ``size`` zero bytes (1 GiB is about 1 MB on the wire): one member
    of 16 MiB repeated, since concatenated gzip members decode to their concatenation."""
    member_size = min(size, 16 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = comp.compress(bytes(member_size)) + comp.flush()
    return member * (size // member_size)
