"""Interrupted and corrupted downloads through a proxy in front of moto: the target file
appears only complete and verified; otherwise nothing is left behind."""

from __future__ import annotations

import os

import pytest
from s3_kit_helpers import attempts
from ipfs_accelerate_py.errors import InvalidRequest, TransientError
from s3_kit_proxy import is_op

DATA = os.urandom(3 * 1024 * 1024 + 7)


@pytest.fixture
def stored(pkit, bucket):
    pkit.put_bytes(bucket, "dl.bin", DATA)
    return bucket


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_cut_body_is_retried_and_file_is_whole(pkit, pclient, proxy, stored, tmp_path, declared):
    proxy.cut_body(is_op("GET", path_contains="dl.bin"), keep=1024 * 1024, declared=declared)
    target = tmp_path / "out.bin"
    res = pkit.download_file(stored, "dl.bin", target)
    assert res.attempts == 2
    assert target.read_bytes() == DATA
    assert os.listdir(tmp_path) == ["out.bin"]


def test_permanently_cut_download_leaves_no_partial_file(pkit, pclient, proxy, stored, tmp_path):
    proxy.cut_body(is_op("GET", path_contains="dl.bin"), keep=100_000, times=100)
    target = tmp_path / "out.bin"
    with pytest.raises(TransientError) as info:
        pkit.download_file(stored, "dl.bin", target)
    assert info.value.code == "IncompleteBody"
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary file


def test_failed_download_keeps_the_previous_file(pkit, proxy, stored, tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous version")
    proxy.cut_body(is_op("GET", path_contains="dl.bin"), keep=10, times=100)
    with pytest.raises(TransientError):
        pkit.download_file(stored, "dl.bin", target)
    assert target.read_bytes() == b"previous version"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_corrupted_body_fails_md5_check_and_is_retried(pkit, pclient, proxy, stored, tmp_path):
    proxy.corrupt_body(is_op("GET", path_contains="dl.bin"))
    assert pkit.get_bytes(stored, "dl.bin") == DATA
    proxy.corrupt_body(is_op("GET", path_contains="dl.bin"), times=100)
    with pytest.raises(TransientError) as info:
        pkit.download_file(stored, "dl.bin", tmp_path / "x.bin")
    assert info.value.code == "ETagMismatch"
    assert os.listdir(tmp_path) == []


def test_cut_download_to_bytes_is_retried(pkit, pclient, proxy, stored):
    proxy.cut_body(is_op("GET", path_contains="dl.bin"), keep=5000)
    before = attempts(pclient)
    assert pkit.get_bytes(stored, "dl.bin") == DATA
    assert attempts(pclient) - before == 2


def test_an_object_over_the_memory_limit_is_refused_once_and_names_the_remedy(moto_server, bucket, kit):
    from s3_kit_helpers import make_client

    from ipfs_accelerate_py.errors import InvalidRequest

    kit.put_bytes(bucket, "big.bin", DATA)
    with make_client(moto_server.url, max_body_in_memory=1024 * 1024) as c:
        with pytest.raises(InvalidRequest) as info:
            c.call("s3_kit", "get_object", {"bucket": bucket, "key": "big.bin"})
        small = c.call("s3_kit", "get_object", {"bucket": bucket, "key": "big.bin",
                                                "range": "bytes=0-99"})
    assert info.value.code == "BodyTooLarge" and info.value.attempts == 1
    assert f"{len(DATA)} bytes" in str(info.value) and "download_dir" in str(info.value)
    assert small.data["body"] == DATA[:100]


def test_download_dir_streams_objects_to_disk(moto_server, bucket, kit, tmp_path):
    from s3_kit_helpers import make_client

    kit.put_bytes(bucket, "nested/../dl.bin", DATA)
    with make_client(moto_server.url, download_dir=str(tmp_path),
                     max_body_in_memory=1024) as c:
        res = c.call("s3_kit", "get_object", {"bucket": bucket, "key": "nested/../dl.bin"})
    # one flat, quoted file name: a key can never write outside download_dir
    assert os.listdir(tmp_path) == ["nested%2F..%2Fdl.bin"]
    assert res.data["path"] == str(tmp_path / "nested%2F..%2Fdl.bin")
    assert res.data["size"] == len(DATA) and "body" not in res.data
    assert (tmp_path / "nested%2F..%2Fdl.bin").read_bytes() == DATA


def test_chunked_body_over_the_limit_stops_reading(pclient, proxy, stored):
    # No Content-Length: the limit is enforced while reading, chunk by chunk.
    from s3_kit_helpers import make_client

    proxy.cut_body(is_op("GET", path_contains="dl.bin"), keep=len(DATA), declared=False)
    with make_client(proxy.url, max_body_in_memory=512 * 1024) as c:
        with pytest.raises(InvalidRequest) as info:
            c.call("s3_kit", "get_object", {"bucket": stored, "key": "dl.bin"})
    assert getattr(info.value, "code", None) == "BodyTooLarge"
