"""Request bodies for uploads: bytes, a file path, or a stream, each replayable on retry
where that is possible, with the hashes signing and verification need.

- bytes: Content-MD5 and the real payload SHA-256 are signed; the ETag is checked.
- a file path: read in blocks when sent (never loaded whole), reopened on each attempt;
  Content-MD5 is computed and checked; the payload is UNSIGNED-PAYLOAD (it is streamed).
- a stream (file object): UNSIGNED-PAYLOAD, no MD5; a seekable stream is rewound to where
  it started on a retry, a non-seekable one can be sent once only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from typing import IO, Any, Callable, Iterator

import attrs

from .signing import UNSIGNED_PAYLOAD

BLOCK = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SizedReader:
    """A body ``requests`` sends with a Content-Length: exactly ``length`` bytes read from a
    file object that is opened lazily and closed at the end (so a path is reopened per attempt)."""

    def __init__(self, opener: Callable[[], IO[bytes]], length: int, *, close: bool = True) -> None:
        self._opener = opener
        self._length = length
        self._remaining = length
        self._fh: IO[bytes] | None = None
        self._close = close

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            self.close()
            return b""
        if self._fh is None:
            self._fh = self._opener()
        n = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._fh.read(n)
        if not data:  # the source is shorter than announced; the server will reject it
            self.close()
            return b""
        self._remaining -= len(data)
        if self._remaining <= 0:
            self.close()
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read(BLOCK)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        if self._fh is not None and self._close:
            self._fh.close()
        self._fh = None


@attrs.define
class Body:
    data: Any  # bytes or a SizedReader
    length: int
    payload_hash: str  # hex SHA-256, or UNSIGNED-PAYLOAD
    md5_hex: str | None  # what the ETag must equal, when known

    @property
    def content_md5(self) -> str | None:
        return None if self.md5_hex is None else base64.b64encode(bytes.fromhex(self.md5_hex)).decode()


def from_bytes(data: bytes | bytearray | memoryview | str) -> Body:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return Body(raw, len(raw), hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest())


def file_md5(path: str | os.PathLike[str]) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def from_path(path: str | os.PathLike[str]) -> Body:
    size = os.path.getsize(path)
    md5 = file_md5(path)
    return Body(SizedReader(lambda: open(path, "rb"), size), size, UNSIGNED_PAYLOAD, md5)


class StreamBodies:
    """Remembers where each request's stream started, so a retry can rewind it."""

    def __init__(self, limit: int = 4096) -> None:
        self._starts: dict[str, int | None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def prepare(self, request_id: str, stream: IO[bytes], length: int | None) -> Body:
        seekable = _seekable(stream)
        with self._lock:
            seen = request_id in self._starts
            start = self._starts.get(request_id)
            if not seen:
                if len(self._starts) >= self._limit:
                    self._starts.pop(next(iter(self._starts)))
                start = stream.tell() if seekable else None
                self._starts[request_id] = start
        if seen:
            if start is None:
                raise ValueError("a non-seekable stream body cannot be sent twice (the first "
                                 "attempt consumed it); use S3Kit.upload_fileobj for retryable uploads")
            stream.seek(start)
        if length is None:
            if not seekable:
                raise ValueError("a non-seekable stream needs 'content_length'")
            pos = stream.tell()
            length = stream.seek(0, io.SEEK_END) - pos
            stream.seek(pos)
        return Body(SizedReader(lambda: stream, int(length), close=False), int(length),
                    UNSIGNED_PAYLOAD, None)

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._starts.pop(request_id, None)


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False
