"""Reading an object's body: to bytes, or into a file that appears only when complete.

The body is read raw (no transparent gunzip: an object stored with Content-Encoding gzip
must come back byte-identical), its length is checked against Content-Length and its MD5
against a plain (non-multipart) ETag.  A file download goes to a temporary file in the
target's directory and is renamed over the target only after both checks pass; on any
failure the temporary file is removed, so an interrupted download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from typing import IO, Iterator

import requests
import urllib3.exceptions

_PLAIN_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
CHUNK = 256 * 1024


class BodyReadError(Exception):
    """The connection failed while the body was being read (retry the request)."""


class BodyMismatch(Exception):
    """The body arrived whole but does not match its length or ETag (retry the request)."""


def plain_md5(etag: str | None) -> str | None:
    """The MD5 an ETag stands for, or None (multipart ``-N`` ETags, SSE-C, absent)."""
    if not etag:
        return None
    m = _PLAIN_ETAG.match(etag.strip())
    return m.group(1).lower() if m else None


def _chunks(response: requests.Response) -> Iterator[bytes]:
    try:
        yield from response.raw.stream(CHUNK, decode_content=False)
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise BodyReadError(f"{type(exc).__name__}") from None


class BodyTooLarge(Exception):
    """The object is larger than may be held in memory: download it to a file instead."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"object body is {size} bytes or more, over the in-memory limit of "
                         f"{limit} bytes")
        self.size = size
        self.limit = limit


class _Check:
    def __init__(self, response: requests.Response, verify_md5: bool) -> None:
        length = response.headers.get("Content-Length")
        self.expected_length = int(length) if length and length.isdigit() else None
        self.expected_md5 = plain_md5(response.headers.get("ETag")) if verify_md5 else None
        self.md5 = hashlib.md5() if self.expected_md5 else None
        self.count = 0

    def update(self, chunk: bytes) -> None:
        self.count += len(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)

    def verify(self) -> None:
        if self.expected_length is not None and self.count != self.expected_length:
            raise BodyReadError(f"body ended after {self.count} of {self.expected_length} bytes")
        if self.md5 is not None and self.md5.hexdigest() != self.expected_md5:
            raise BodyMismatch("body MD5 does not match the object's ETag")


def read_bytes(response: requests.Response, *, verify_md5: bool,
               limit: int | None = None) -> bytes:
    """The whole body in memory; over ``limit`` bytes (announced or read) raises
    :class:`BodyTooLarge` before holding more than one chunk past it."""
    check = _Check(response, verify_md5)
    parts = []
    try:
        if limit is not None and check.expected_length is not None and check.expected_length > limit:
            raise BodyTooLarge(check.expected_length, limit)
        for chunk in _chunks(response):
            check.update(chunk)
            if limit is not None and check.count > limit:
                raise BodyTooLarge(check.count, limit)
            parts.append(chunk)
    finally:
        response.close()
    check.verify()
    return b"".join(parts)


def read_to_file(response: requests.Response, path: str | os.PathLike[str], *,
                 verify_md5: bool) -> int:
    """Write the body to ``path`` atomically; return its size.  Raises BodyReadError /
    BodyMismatch (nothing written) or OSError from the local file system."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(target) + ".",
                               suffix=".part")
    check = _Check(response, verify_md5)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy(response, out, check)
            out.flush()
            os.fsync(out.fileno())
        check.verify()
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        response.close()
    return check.count


def _copy(response: requests.Response, out: IO[bytes], check: _Check) -> None:
    for chunk in _chunks(response):
        check.update(chunk)
        out.write(chunk)
