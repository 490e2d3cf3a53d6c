"""Multipart uploads against moto through a fault-injecting proxy: parts are separate
pipeline requests, retried on their own; a permanent failure aborts the upload."""

from __future__ import annotations

import hashlib
import re
import io
import os

import pytest
from s3_kit_helpers import attempts
from ipfs_accelerate_s3_kit import MultipartUploadError
from s3_kit_proxy import is_op, is_part, s3_error

MB = 1024 * 1024


def _uploads(client, bucket):
    return client.call("s3_kit", "list_multipart_uploads", {"bucket": bucket}).data["uploads"]


def _multipart_etag(data: bytes, part: int) -> str:
    md5s = b"".join(hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part))
    return f'"{hashlib.md5(md5s).hexdigest()}-{-(-len(data) // part)}"'


def test_50mb_multipart_round_trip(kit, client, bucket, tmp_path):
    data = os.urandom(50 * MB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    res = kit.upload_file(src, bucket, "big.bin", part_size=8 * MB, concurrency=4)
    assert res.data["etag"] == _multipart_etag(data, 8 * MB)  # 7 parts
    out = tmp_path / "back.bin"
    kit.download_file(bucket, "big.bin", out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert _uploads(client, bucket) == []
    # create + 7 parts + complete (+ bucket creation, download, listing) with no retry
    assert client.stats().backends["s3_kit"]["retries"] == 0


def test_failed_part_is_retried_on_its_own(pkit, pclient, proxy, bucket, tmp_path):
    data = os.urandom(16 * MB + 123)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    proxy.fail(is_part(2), s3_error(500, "InternalError", "We encountered an internal error."))
    proxy.fail(is_part(3), s3_error(503, "SlowDown", "Please reduce your request rate."))
    res = pkit.upload_file(src, bucket, "f.bin", part_size=5 * MB, concurrency=4)
    assert res.data["etag"] == _multipart_etag(data, 5 * MB)
    part_puts = [r for r in proxy.requests if r.method == "PUT" and "partNumber" in r.query]
    numbers = sorted(int(r.query["partNumber"][0]) for r in part_puts)
    assert numbers == [1, 2, 2, 3, 3, 4]  # only the failed parts were sent twice
    assert pkit.get_bytes(bucket, "f.bin") == data
    assert pclient.stats().backends["s3_kit"]["retries"] == 2


def test_part_with_wrong_etag_is_resent(pkit, proxy, bucket, tmp_path):
    """A part whose ETag does not match the MD5 of what was sent counts as failed."""
    data = os.urandom(6 * MB)
    src = tmp_path / "e.bin"
    src.write_bytes(data)

    def bad_etag(req):
        resp = proxy._upstream(req)
        resp.headers["ETag"] = '"' + "0" * 32 + '"'
        return resp

    proxy.on(is_part(1), bad_etag)
    pkit.upload_file(src, bucket, "e.bin", part_size=5 * MB)
    assert [r.query["partNumber"][0] for r in proxy.requests if "partNumber" in r.query].count("1") == 2
    assert pkit.get_bytes(bucket, "e.bin") == data


def test_permanent_part_failure_aborts_the_upload(pkit, pclient, proxy, bucket, tmp_path):
    data = os.urandom(12 * MB)
    src = tmp_path / "p.bin"
    src.write_bytes(data)
    proxy.fail(is_part(2), s3_error(500, "InternalError"), times=100)
    with pytest.raises(MultipartUploadError) as info:
        pkit.upload_file(src, bucket, "p.bin", part_size=5 * MB, concurrency=2)
    assert info.value.aborted and info.value.upload_id
    aborts = [r for r in proxy.requests if r.method == "DELETE" and "uploadId" in r.query]
    assert len(aborts) == 1
    assert _uploads(pclient, bucket) == []
    assert pkit.list_all(bucket) == []  # nothing half-written remains
    assert "InternalError" in str(info.value.__cause__)


def test_part_rejected_as_invalid_aborts_without_retry(pkit, pclient, proxy, bucket, tmp_path):
    src = tmp_path / "q.bin"
    src.write_bytes(os.urandom(11 * MB))
    proxy.fail(is_part(1), s3_error(400, "InvalidArgument", "Part number must be an integer"))
    before = attempts(pclient)
    with pytest.raises(MultipartUploadError):
        pkit.upload_file(src, bucket, "q.bin", part_size=5 * MB, concurrency=1)
    assert len([r for r in proxy.requests if r.query.get("partNumber") == ["1"]]) == 1
    assert attempts(pclient) - before <= 4  # create, part 1, (maybe part 2), abort
    assert _uploads(pclient, bucket) == []


def test_failed_complete_aborts(pkit, pclient, proxy, bucket, tmp_path):
    src = tmp_path / "c.bin"
    src.write_bytes(os.urandom(6 * MB))
    proxy.fail(is_op("POST", query="uploadId"), s3_error(400, "InvalidPart", "One or more parts not found"))
    with pytest.raises(MultipartUploadError):
        pkit.upload_file(src, bucket, "c.bin", part_size=5 * MB)
    assert _uploads(pclient, bucket) == []


def test_complete_answering_200_with_an_error_is_retried(pkit, proxy, bucket, tmp_path):
    """CompleteMultipartUpload may send 200 and then an <Error> body; that is a failure."""
    data = os.urandom(6 * MB)
    src = tmp_path / "k.bin"
    src.write_bytes(data)
    bad = s3_error(500, "InternalError", "We encountered an internal error.")
    bad.status = 200
    proxy.fail(is_op("POST", query="uploadId"), bad)
    pkit.upload_file(src, bucket, "k.bin", part_size=5 * MB)
    assert len([r for r in proxy.requests if r.method == "POST" and "uploadId" in r.query]) == 2
    assert pkit.get_bytes(bucket, "k.bin") == data


def test_upload_fileobj_from_unsized_stream(kit, bucket):
    data = os.urandom(11 * MB + 5)

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._buf.read(min(len(b), 64 * 1024))
            b[:len(chunk)] = chunk
            return len(chunk)

    res = kit.upload_fileobj(Pipe(), bucket, "pipe.bin", part_size=5 * MB, concurrency=2)
    assert res.data["etag"] == _multipart_etag(data, 5 * MB)
    assert kit.get_bytes(bucket, "pipe.bin") == data


def test_small_file_is_a_single_put(pkit, proxy, bucket, tmp_path):
    src = tmp_path / "s.bin"
    src.write_bytes(b"small")
    pkit.upload_file(src, bucket, "s.bin")
    assert [r.method for r in proxy.requests[-1:]] == ["PUT"]
    assert "uploads" not in proxy.requests[-1].query
    assert pkit.get_bytes(bucket, "s.bin") == b"small"


def test_wrong_final_etag_deletes_the_object(pkit, proxy, bucket, tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(6 * MB))

    def bad_complete(req):
        resp = proxy._upstream(req)
        resp.body = re.sub(rb"<ETag>[^<]*</ETag>", b"<ETag>&quot;" + b"0" * 32 + b"-2&quot;</ETag>", resp.body)
        return resp

    proxy.on(is_op("POST", query="uploadId"), bad_complete)
    with pytest.raises(MultipartUploadError) as info:
        pkit.upload_file(src, bucket, "w.bin", part_size=5 * MB)
    assert "does not match" in str(info.value)
    assert pkit.list_all(bucket) == []
