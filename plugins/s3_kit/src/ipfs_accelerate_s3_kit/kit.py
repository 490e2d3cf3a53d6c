"""S3Kit: convenience over a pipeline :class:`~ipfs_accelerate_py.Client`.

Every network operation here is one or more pipeline requests (queued, rate-limited,
retried, counted); nothing talks to S3 behind the pipeline's back.  Presigned URLs are
computed locally (no request).

    kit = S3Kit(client)
    kit.upload_file("big.bin", "bucket", "big.bin", part_size=8 * MB, concurrency=4)
    kit.download_file("bucket", "big.bin", "copy.bin")
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import IO, Any, Iterator, Mapping, Sequence

from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Priority, Request
from ipfs_accelerate_py.results import Result

from .download import plain_md5

MB = 1024 * 1024
MIN_PART = 5 * MB  # S3's minimum for every part but the last
MAX_PARTS = 10_000


class MultipartUploadError(Exception):
    """A multipart upload failed and was aborted; ``__cause__`` is the failure."""

    def __init__(self, message: str, *, upload_id: str | None, aborted: bool) -> None:
        super().__init__(message)
        self.upload_id = upload_id
        self.aborted = aborted


class S3Kit:
    """High-level S3 calls through a pipeline client (backend name ``s3_kit`` by default)."""

    def __init__(self, client: Any, backend: str = "s3_kit") -> None:
        self.client = client
        self.backend_name = backend

    def __repr__(self) -> str:
        return f"S3Kit(backend={self.backend_name!r})"

    # ------------------------------------------------------------------ plumbing
    def call(self, operation: str, payload: Mapping[str, Any], **fields: Any) -> Result:
        return self.client.call(self.backend_name, operation, dict(payload), **fields)

    def submit(self, operation: str, payload: Mapping[str, Any], **fields: Any) -> Future:
        return self.client.submit(self.backend_name, operation, dict(payload), **fields)

    @property
    def backend(self) -> Any:
        return self.client.backends[self.backend_name]

    def _keys(self) -> Sequence[ApiKey]:
        backend = self.backend
        return backend.config.keys or type(backend).keys_from()

    # ------------------------------------------------------------------ simple objects
    def list_buckets(self) -> list[dict[str, Any]]:
        return self.call("list_buckets", {}).data

    def create_bucket(self, bucket: str, **opts: Any) -> Result:
        return self.call("create_bucket", {"bucket": bucket, **opts})

    def delete_bucket(self, bucket: str) -> Result:
        return self.call("delete_bucket", {"bucket": bucket})

    def put_bytes(self, bucket: str, key: str, data: bytes, **opts: Any) -> Result:
        return self.call("put_object", {"bucket": bucket, "key": key, "body": data, **opts})

    def get_bytes(self, bucket: str, key: str, **opts: Any) -> bytes:
        return self.call("get_object", {"bucket": bucket, "key": key, **opts}).data["body"]

    def download_file(self, bucket: str, key: str, path: str | os.PathLike[str], **opts: Any) -> Result:
        """Stream an object into ``path``: written to a temporary file beside it and renamed
        only once complete and verified (length and MD5 ETag)."""
        return self.call("get_object", {"bucket": bucket, "key": key, "file": os.fspath(path), **opts})

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        return self.call("head_object", {"bucket": bucket, "key": key}).data

    def delete(self, bucket: str, key: str) -> Result:
        return self.call("delete_object", {"bucket": bucket, "key": key})

    def delete_many(self, bucket: str, keys: Sequence[str]) -> dict[str, list]:
        """Delete any number of keys, 1000 per Multi-Object Delete request, in parallel."""
        futures = [self.submit("delete_objects", {"bucket": bucket, "keys": list(keys[i:i + 1000]),
                                                  "quiet": True})
                   for i in range(0, len(keys), 1000)]
        out: dict[str, list] = {"deleted": [], "errors": []}
        for f in futures:
            data = f.result().data
            out["deleted"] += data["deleted"]
            out["errors"] += data["errors"]
        return out

    def copy(self, source_bucket: str, source_key: str, bucket: str, key: str, **opts: Any) -> Result:
        return self.call("copy_object", {"bucket": bucket, "key": key, "source_bucket": source_bucket,
                                         "source_key": source_key, **opts})

    # ------------------------------------------------------------------ listing
    def list_page(self, bucket: str, *, prefix: str | None = None, continuation_token: str | None = None,
                  max_keys: int | None = None, delimiter: str | None = None) -> dict[str, Any]:
        return self.call("list_objects_v2", {"bucket": bucket, "prefix": prefix, "max_keys": max_keys,
                                             "continuation_token": continuation_token,
                                             "delimiter": delimiter}).data

    def iter_objects(self, bucket: str, *, prefix: str | None = None,
                     page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix``, following continuation tokens page by page."""
        token: str | None = None
        while True:
            page = self.list_page(bucket, prefix=prefix, continuation_token=token, max_keys=page_size)
            yield from page["contents"]
            token = page["next_continuation_token"]
            if not page["is_truncated"] or not token:
                return

    def list_all(self, bucket: str, **kwargs: Any) -> list[dict[str, Any]]:
        return list(self.iter_objects(bucket, **kwargs))

    # ------------------------------------------------------------------ presigned URLs
    def presigned_url(self, method: str, bucket: str, key: str, *, expires_in: int = 3600,
                      key_name: str | None = None, headers: Mapping[str, str] | None = None) -> str:
        """A presigned GET/PUT (...) URL signed with the named key (default: the first)."""
        keys = self._keys()
        chosen = next((k for k in keys if key_name is None or k.key_id == key_name), None)
        if chosen is None:
            raise LookupError(f"no S3 key named {key_name!r}")
        return self.backend.presigned_url(chosen, method, bucket, key, expires_in=expires_in,
                                          headers=headers)

    # ------------------------------------------------------------------ multipart uploads
    def upload_file(self, path: str | os.PathLike[str], bucket: str, key: str, *,
                    part_size: int = 8 * MB, concurrency: int = 4,
                    multipart_threshold: int | None = None, **opts: Any) -> Result:
        """Upload a file; above ``multipart_threshold`` (default: ``part_size``) as a multipart
        upload whose parts are separate pipeline requests, each retried on its own and
        verified against its MD5; any failure aborts the upload (nothing half-written stays)."""
        size = os.path.getsize(path)
        threshold = part_size if multipart_threshold is None else multipart_threshold
        if size <= threshold:
            return self.call("put_object", {"bucket": bucket, "key": key, "file": os.fspath(path), **opts})
        part_size = _part_size(size, part_size)

        def parts() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while True:
                    block = fh.read(part_size)
                    if not block:
                        return
                    yield block

        return self._multipart(bucket, key, parts(), concurrency, opts)

    def upload_fileobj(self, stream: IO[bytes], bucket: str, key: str, *, part_size: int = 8 * MB,
                       concurrency: int = 4, **opts: Any) -> Result:
        """Upload from any readable stream (length unknown) as a multipart upload; parts are
        buffered (``concurrency`` x ``part_size`` bytes at most) so each can be retried."""
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes")

        def parts() -> Iterator[bytes]:
            first = True
            while True:
                block = _read_full(stream, part_size)
                if not block and not first:
                    return
                first = False
                yield block
                if len(block) < part_size:
                    return

        return self._multipart(bucket, key, parts(), concurrency, opts)

    def _multipart(self, bucket: str, key: str, parts: Iterator[bytes], concurrency: int,
                   opts: Mapping[str, Any]) -> Result:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        created = self.call("create_multipart_upload", {"bucket": bucket, "key": key, **opts})
        upload_id = created.data["upload_id"]
        pin = created.key_id  # every part goes to the endpoint/credentials that own the upload
        base = {"bucket": bucket, "key": key, "upload_id": upload_id}
        pending: dict[Future, int] = {}
        etags: dict[int, str] = {}
        md5s: dict[int, bytes] = {}
        try:
            for number, block in enumerate(parts, start=1):
                if number > MAX_PARTS:
                    raise ValueError(f"more than {MAX_PARTS} parts; raise part_size")
                md5s[number] = hashlib.md5(block).digest()
                while len(pending) >= concurrency:
                    self._collect(pending, etags, wait(pending, return_when=FIRST_COMPLETED).done)
                pending[self.submit("upload_part", {**base, "part_number": number, "body": block},
                                    key=pin)] = number
            while pending:
                self._collect(pending, etags, wait(pending, return_when=FIRST_COMPLETED).done)
            done = self.call("complete_multipart_upload",
                             {**base, "parts": [{"part_number": n, "etag": e} for n, e in sorted(etags.items())]},
                             key=pin)
        except BaseException as exc:
            aborted = self._abort(base, pending, pin)
            if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: as they are
                raise
            raise MultipartUploadError(f"multipart upload of {bucket}/{key} failed "
                                       f"({type(exc).__name__}: {exc}); "
                                       f"{'aborted' if aborted else 'ABORT FAILED'}",
                                       upload_id=upload_id, aborted=aborted) from exc
        if not self._final_etag_ok(done, md5s):
            # The assembled object is not what we sent: remove it rather than leave it wrong.
            self.call("delete_object", {"bucket": bucket, "key": key}, key=pin, priority=Priority.HIGH)
            raise MultipartUploadError(f"multipart upload of {bucket}/{key}: the server's ETag "
                                       f"{done.data.get('etag')} does not match the parts sent; "
                                       "the object was deleted", upload_id=upload_id, aborted=False)
        return done

    @staticmethod
    def _collect(pending: dict[Future, int], etags: dict[int, str], finished: set[Future]) -> None:
        for f in finished:
            number = pending.pop(f)
            etags[number] = f.result().data["etag"]  # raises the part's final error

    def _abort(self, base: Mapping[str, Any], pending: dict[Future, int], pin: str | None) -> bool:
        for f in pending:
            f.cancel()
        wait(list(pending))  # parts still running must end before the abort, or they'd linger
        try:
            self.call("abort_multipart_upload", base, key=pin, priority=Priority.HIGH)
            return True
        except Exception:
            return False

    def _final_etag_ok(self, done: Result, md5s: Mapping[int, bytes]) -> bool:
        """A multipart ETag is MD5(concat(part MD5s))-N; check it when the server follows that."""
        etag = (done.data.get("etag") or "").strip('"')
        if "-" not in etag or not self.backend.option("verify_etag", True):
            return True
        expected = hashlib.md5(b"".join(md5s[n] for n in sorted(md5s))).hexdigest() + f"-{len(md5s)}"
        return etag == expected

    def request(self, operation: str, payload: Mapping[str, Any], **fields: Any) -> Request:
        """A :class:`Request` for this backend (for ``client.map``)."""
        return Request(operation=operation, payload=dict(payload), backend=self.backend_name, **fields)


def _part_size(size: int, wanted: int) -> int:
    if wanted < MIN_PART:
        raise ValueError(f"part_size must be at least {MIN_PART} bytes")
    part = wanted
    while (size + part - 1) // part > MAX_PARTS:
        part *= 2
    return part


def _read_full(stream: IO[bytes], n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


__all__ = ["S3Kit", "MultipartUploadError", "MB", "plain_md5"]
