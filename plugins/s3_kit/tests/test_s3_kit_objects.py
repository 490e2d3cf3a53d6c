"""Object round trips against a real S3 server (moto), every call through the pipeline."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest
from s3_kit_helpers import attempts
from ipfs_accelerate_py.errors import InvalidRequest, NotFound


@pytest.mark.parametrize("size", [0, 1, 1000, 50 * 1024 * 1024])
def test_bytes_round_trip(kit, client, bucket, size):
    data = os.urandom(size)
    put = kit.put_bytes(bucket, f"obj-{size}", data)
    assert put.data["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert kit.get_bytes(bucket, f"obj-{size}") == data
    head = kit.head(bucket, f"obj-{size}")
    assert head["content_length"] == size
    assert attempts(client) == 4  # create bucket, put, get, head: no retries


def test_file_and_stream_uploads(kit, client, bucket, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    r = client.call("s3_kit", "put_object", {"bucket": bucket, "key": "from-file", "file": str(src)})
    assert r.data["etag"].strip('"') == hashlib.md5(data).hexdigest()
    # a seekable stream, read from where it stands
    stream = io.BytesIO(b"skip" + data)
    stream.seek(4)
    client.call("s3_kit", "put_object", {"bucket": bucket, "key": "from-stream", "stream": stream})

    class OneWay(io.RawIOBase):  # a non-seekable stream with a known length
        def __init__(self, payload: bytes) -> None:
            self._buf = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._buf.read(len(b))
            b[:len(chunk)] = chunk
            return len(chunk)

    client.call("s3_kit", "put_object", {"bucket": bucket, "key": "from-pipe",
                                         "stream": OneWay(data), "content_length": len(data)})
    for key in ("from-file", "from-stream", "from-pipe"):
        assert kit.get_bytes(bucket, key) == data


def test_download_to_file_is_verified_and_atomic(kit, bucket, tmp_path):
    data = os.urandom(2 * 1024 * 1024)
    kit.put_bytes(bucket, "d/file.bin", data)
    target = tmp_path / "out.bin"
    res = kit.download_file(bucket, "d/file.bin", target)
    assert target.read_bytes() == data
    assert res.data["size"] == len(data) and res.data["path"] == str(target)
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]  # no temporary file left


def test_metadata_content_type_copy_and_range(kit, client, bucket):
    kit.put_bytes(bucket, "src key+=&.txt", b"0123456789", content_type="text/plain",
                  metadata={"Origin": "unit"})
    head = kit.head(bucket, "src key+=&.txt")
    assert head["content_type"] == "text/plain"
    assert head["metadata"] == {"origin": "unit"}
    copied = kit.copy(bucket, "src key+=&.txt", bucket, "copy/dst.txt")
    assert copied.data["etag"].strip('"') == hashlib.md5(b"0123456789").hexdigest()
    assert kit.get_bytes(bucket, "copy/dst.txt") == b"0123456789"
    part = client.call("s3_kit", "get_object", {"bucket": bucket, "key": "copy/dst.txt",
                                                "range": "bytes=2-5"})
    assert part.data["body"] == b"2345" and part.data["content_range"] == "bytes 2-5/10"


def test_gzip_encoded_object_comes_back_byte_identical(kit, bucket):
    packed = gzip.compress(b"hello " * 1000)
    kit.put_bytes(bucket, "z.gz", packed, content_encoding="gzip")
    assert kit.get_bytes(bucket, "z.gz") == packed  # never transparently decoded


def test_delete_single_and_batch(kit, client, bucket):
    for i in range(5):
        kit.put_bytes(bucket, f"del/{i}", b"x")
    kit.delete(bucket, "del/0")
    with pytest.raises(NotFound):
        kit.head(bucket, "del/0")
    out = kit.delete_many(bucket, [f"del/{i}" for i in range(1, 5)])
    assert out["errors"] == []
    assert kit.list_all(bucket, prefix="del/") == []
    res = client.call("s3_kit", "delete_objects", {"bucket": bucket, "keys": ["a", "b"]})
    assert sorted(res.data["deleted"]) == ["a", "b"]  # S3 reports absent keys as deleted


def test_buckets_create_list_delete(kit):
    kit.create_bucket("bkt-lifecycle")
    assert "bkt-lifecycle" in [b["name"] for b in kit.list_buckets()]
    kit.delete_bucket("bkt-lifecycle")
    assert "bkt-lifecycle" not in [b["name"] for b in kit.list_buckets()]
    with pytest.raises(NotFound) as info:
        kit.delete_bucket("bkt-lifecycle")
    assert info.value.code == "NoSuchBucket"


def test_region_bucket_sends_location_constraint(pkit, proxy):
    pkit.create_bucket("bkt-eu", region="eu-west-1")
    sent = proxy.requests[-1]
    assert sent.method == "PUT" and sent.path == "/bkt-eu"
    assert b"<LocationConstraint>eu-west-1</LocationConstraint>" in sent.body


def test_bad_payloads_are_rejected_before_queueing(client):
    with pytest.raises(InvalidRequest):
        client.submit("s3_kit", "put_object", {"bucket": "b", "key": "k"})
    with pytest.raises(InvalidRequest):
        client.submit("s3_kit", "get_object", {"bucket": "b"})
    with pytest.raises(InvalidRequest):
        client.submit("s3_kit", "delete_objects", {"bucket": "b", "keys": [str(i) for i in range(1001)]})
    assert client.stats().to_dict()["backends"].get("s3_kit", {}).get("attempts", 0) == 0
