"""Configuration (explicit keys, original s3cfg metadata, environment), addressing, the
exact requests sent, and endpoint multiplexing through the core's key strategies."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import pytest
from s3_kit_helpers import ACCESS, SECRET, make_client
from ipfs_accelerate_py import BackendConfig
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_s3_kit import S3Kit, S3KitBackend, s3_key
from ipfs_accelerate_s3_kit.credentials import credentials_of
from ipfs_accelerate_s3_kit.signing import build_url

AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<access>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
                  r"/s3/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=[0-9a-f]{64}$")


def _auth(req) -> re.Match:
    m = AUTH.match(req.header("authorization") or "")
    assert m, req.header("authorization")
    return m


# ---------------------------------------------------------------------- exact requests
def test_put_bytes_request_is_signed_with_payload_hash_and_md5(pkit, proxy, bucket):
    body = b"exact body"
    pkit.put_bytes(bucket, "dir/a b.txt", body, content_type="text/plain", metadata={"k": "v"})
    req = proxy.last
    assert (req.method, req.path) == ("PUT", f"/{bucket}/dir/a%20b.txt")
    assert req.body == body
    assert req.header("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
    assert req.header("content-md5") == base64.b64encode(hashlib.md5(body).digest()).decode()
    assert req.header("content-type") == "text/plain" and req.header("x-amz-meta-k") == "v"
    assert re.fullmatch(r"\d{8}T\d{6}Z", req.header("x-amz-date"))
    m = _auth(req)
    assert m["access"] == ACCESS and m["region"] == "us-east-1"
    assert set(m["signed"].split(";")) >= {"host", "x-amz-date", "x-amz-content-sha256",
                                            "content-md5", "content-type", "x-amz-meta-k"}
    assert SECRET not in " ".join(req.headers.values())
    assert "x-request-id" not in req.headers


def test_streamed_bodies_are_unsigned_payload(pkit, pclient, proxy, bucket, tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"file body")
    pclient.call("s3_kit", "put_object", {"bucket": bucket, "key": "f", "file": str(src)})
    req = proxy.last
    assert req.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert req.header("content-md5") == base64.b64encode(hashlib.md5(b"file body").digest()).decode()
    assert req.body == b"file body" and req.header("content-length") == "9"
    pclient.call("s3_kit", "put_object", {"bucket": bucket, "key": "s", "stream": io.BytesIO(b"stream")})
    req = proxy.last
    assert req.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD" and req.header("content-md5") is None
    assert req.body == b"stream"


def test_seekable_stream_is_rewound_for_a_retry(pkit, pclient, proxy, bucket):
    from s3_kit_proxy import is_op, s3_error

    proxy.fail(is_op("PUT"), s3_error(500, "InternalError"))
    stream = io.BytesIO(b"ab" + b"payload")
    stream.seek(2)
    res = pclient.call("s3_kit", "put_object", {"bucket": bucket, "key": "r", "stream": stream})
    assert res.attempts == 2 and [r.body for r in proxy.requests[-2:]] == [b"payload", b"payload"]


def test_non_seekable_stream_is_not_replayed(pkit, pclient, proxy, bucket):
    from ipfs_accelerate_py.errors import InvalidRequest
    from s3_kit_proxy import is_op, s3_error

    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            return 0

    proxy.fail(is_op("PUT"), s3_error(500, "InternalError"))
    with pytest.raises(InvalidRequest) as info:
        pclient.call("s3_kit", "put_object", {"bucket": bucket, "key": "p", "stream": Pipe(),
                                              "content_length": 0})
    assert "cannot be sent twice" in str(info.value)
    assert len([r for r in proxy.requests if r.method == "PUT"]) == 1  # one attempt, no replay


def test_list_delete_copy_requests(pkit, pclient, proxy, bucket):
    pkit.list_page(bucket, prefix="p/", continuation_token="tok", max_keys=5, delimiter="/")
    q = proxy.last.query
    assert proxy.last.path == f"/{bucket}" and q["list-type"] == ["2"] and q["prefix"] == ["p/"]
    assert q["continuation-token"] == ["tok"] and q["max-keys"] == ["5"] and q["delimiter"] == ["/"]

    pclient.call("s3_kit", "delete_objects", {"bucket": bucket, "keys": ["a&b", "c"], "quiet": True})
    req = proxy.last
    assert req.method == "POST" and "delete" in req.query
    assert b"<Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object><Object><Key>c</Key></Object>" in req.body
    assert req.header("content-md5") == base64.b64encode(hashlib.md5(req.body).digest()).decode()

    pkit.put_bytes(bucket, "src x", b"1")
    pkit.copy(bucket, "src x", bucket, "dst")
    assert proxy.last.header("x-amz-copy-source") == f"{bucket}/src%20x"


# ---------------------------------------------------------------------- addressing
def test_path_and_virtual_host_urls():
    assert build_url("http://127.0.0.1:9000", "bkt", "a b/c", style="auto") == "http://127.0.0.1:9000/bkt/a%20b/c"
    assert build_url("https://s3.amazonaws.com", "bkt", "k", style="auto") == "https://bkt.s3.amazonaws.com/k"
    assert build_url("https://s3.amazonaws.com", "my.dotted", "k", style="auto") == \
        "https://s3.amazonaws.com/my.dotted/k"
    assert build_url("https://minio.local", "bkt", "k", style="virtual") == "https://bkt.minio.local/k"
    assert build_url("https://s3.amazonaws.com", "bkt", "k", style="path") == "https://s3.amazonaws.com/bkt/k"
    assert build_url("http://sim:8080/s3_kit", "bkt", "k", style="path") == "http://sim:8080/s3_kit/bkt/k"
    assert build_url("http://h", "bkt", query={"uploads": None, "prefix": "a/b"}) == \
        "http://h/bkt?uploads&prefix=a%2Fb"


def test_virtual_host_request_is_signed_for_the_bucket_host():
    backend = S3KitBackend(BackendConfig(name="s3_kit", options={"addressing_style": "virtual",
                                                                 "region": "eu-west-1"}))
    from ipfs_accelerate_py.request import Request

    http = backend.build_request(Request("get_object", {"bucket": "bkt", "key": "k"}),
                                 s3_key("test-access", "test-key-1"))
    assert http.url == "https://bkt.s3.eu-west-1.amazonaws.com/k"
    assert "/eu-west-1/s3/aws4_request" in http.headers["Authorization"]


def test_each_key_may_have_its_own_endpoint_and_region():
    backend = S3KitBackend(BackendConfig(name="s3_kit", base_url="http://default:9000"))
    east = s3_key("a", "test-key-1", endpoint_url="http://east:9000", region="us-east-2")
    plain = s3_key("b", "test-key-2")
    assert backend.object_url(east, "b", "k") == "http://east:9000/b/k"
    assert backend.region_for(east) == "us-east-2"
    assert backend.object_url(plain, "b", "k") == "http://default:9000/b/k"


# ---------------------------------------------------------------------- configuration
def test_keys_from_original_s3cfg_metadata():
    keys = S3KitBackend.keys_from({"s3cfg": {"accessKey": "test-access", "secretKey": "test-key-1",
                                             "endpoint": "http://minio:9000"}}, environ={})
    assert len(keys) == 1
    creds = credentials_of(keys[0])
    assert creds.access_key_id.reveal() == "test-access" and creds.secret_key.reveal() == "test-key-1"
    assert creds.endpoint_url == "http://minio:9000"
    assert S3KitBackend.base_url_from({"s3cfg": {"endpoint": "http://minio:9000"}}, {}) == "http://minio:9000"
    # a list is several endpoints / credential pairs: the multiplexer
    many = S3KitBackend.keys_from({"s3cfg": [
        {"accessKey": "a1", "secretKey": "test-key-1", "endpoint": "http://one"},
        {"aws_access_key_id": "a2", "aws_secret_access_key": "test-key-2", "endpoint_url": "http://two",
         "name": "two"}]}, environ={})
    assert [k.key_id for k in many] == ["s3_kit-s3cfg-0", "two"]
    assert [k.extra["endpoint_url"] for k in many] == ["http://one", "http://two"]


def test_keys_from_environment():
    env = {"S3_ACCESS_KEY": "test-access", "S3_SECRET_KEY": "test-key-1", "S3_ENDPOINT": "http://s3e",
           "AWS_REGION": "eu-central-1"}
    (key,) = S3KitBackend.keys_from({}, env)
    assert key.extra["endpoint_url"] == "http://s3e" and key.extra["region"] == "eu-central-1"
    aws = {"AWS_ACCESS_KEY_ID": "test-aws", "AWS_SECRET_ACCESS_KEY": "test-key-2",
           "AWS_ENDPOINT_URL": "http://aws-e", "AWS_DEFAULT_REGION": "ap-south-1",
           "AWS_SESSION_TOKEN": "test-token"}
    (key,) = S3KitBackend.keys_from({}, aws)
    creds = credentials_of(key)
    assert creds.access_key_id.reveal() == "test-aws" and creds.region == "ap-south-1"
    assert creds.endpoint_url == "http://aws-e" and creds.session_token.reveal() == "test-token"
    assert S3KitBackend.base_url_from({}, aws) == "http://aws-e"
    # no credentials: no key, never a placeholder
    assert S3KitBackend.keys_from({}, {}) == []
    assert S3KitBackend.keys_from({"s3cfg": {"endpoint": "http://x"}}, {}) == []
    assert repr(key) == "ApiKey(key_id='s3_kit-aws_access_key_id')"


def test_client_reads_the_environment_when_no_keys_given(monkeypatch, moto_server):
    monkeypatch.setenv("S3_ACCESS_KEY", "test-env-access")
    monkeypatch.setenv("S3_SECRET_KEY", "test-key-9")
    monkeypatch.setenv("S3_ENDPOINT", moto_server.url)
    from ipfs_accelerate_py import Client, ClientConfig

    with Client([BackendConfig(name="s3_kit", options={"addressing_style": "path"})], ClientConfig()) as c:
        assert isinstance(S3Kit(c).list_buckets(), list)


def test_plain_string_keys_use_the_access_colon_secret_form(moto_server):
    with make_client(moto_server.url, keys=["test-access:test-key-1"]) as c:
        assert isinstance(S3Kit(c).list_buckets(), list)
    with make_client(moto_server.url, keys=["test-key-1"]) as c:
        with pytest.raises(ConfigError) as info:
            S3Kit(c).list_buckets()
    assert "test-key-1" not in str(info.value)


def test_session_token_is_sent_and_signed(pkit, proxy):
    with make_client(proxy.url, keys=[s3_key("test-a", "test-key-1", session_token="test-token")]) as c:
        S3Kit(c).list_buckets()
    req = proxy.last
    assert req.header("x-amz-security-token") == "test-token"
    assert "x-amz-security-token" in _auth(req)["signed"].split(";")


# ---------------------------------------------------------------------- multiplexing
@pytest.mark.parametrize("strategy", ["round-robin", "least-loaded"])
def test_endpoints_as_keys_are_multiplexed(moto_server, strategy):
    from s3_kit_proxy import S3Proxy

    east, west = S3Proxy(moto_server.url), S3Proxy(moto_server.url)
    try:
        keys = [s3_key("test-east", "test-key-1", name="east", endpoint_url=east.url),
                s3_key("test-west", "test-key-2", name="west", endpoint_url=west.url)]
        with make_client(None, keys=keys, strategy=strategy, concurrency=4) as c:
            kit = S3Kit(c)
            kit.create_bucket("mux")
            c.map([kit.request("put_object", {"bucket": "mux", "key": f"m{i}", "body": b"m"})
                   for i in range(40)])
            per_key = {k: v["requests"] for k, v in c.stats().keys.items()}
        assert len(east.requests) + len(west.requests) == 41
        assert len(east.requests) >= 5 and len(west.requests) >= 5, per_key
        assert {_auth(r)["access"] for r in east.requests} == {"test-east"}
        assert {_auth(r)["access"] for r in west.requests} == {"test-west"}
    finally:
        east.close()
        west.close()


def test_multipart_parts_stay_on_the_endpoint_that_owns_the_upload(moto_server, tmp_path):
    from s3_kit_proxy import S3Proxy

    east, west = S3Proxy(moto_server.url), S3Proxy(moto_server.url)
    try:
        keys = [s3_key("test-east", "test-key-1", name="east", endpoint_url=east.url),
                s3_key("test-west", "test-key-2", name="west", endpoint_url=west.url)]
        src = tmp_path / "m.bin"
        src.write_bytes(b"m" * (11 * 1024 * 1024))
        with make_client(None, keys=keys, strategy="round-robin") as c:
            kit = S3Kit(c)
            kit.create_bucket("mux-mp")
            kit.upload_file(src, "mux-mp", "m.bin", part_size=5 * 1024 * 1024, concurrency=3)
        owner = east if any("uploads" in r.query for r in east.requests) else west
        other = west if owner is east else east
        assert sum("partNumber" in r.query for r in owner.requests) == 3
        assert not any("partNumber" in r.query or "uploadId" in r.query for r in other.requests)
    finally:
        east.close()
        west.close()


def test_key_without_secret_is_refused():
    backend = S3KitBackend(BackendConfig(name="s3_kit"))
    from ipfs_accelerate_py.request import Request

    with pytest.raises(ConfigError):
        backend.build_request(Request("list_buckets", {}), ApiKey(secret=None, name="anon"))
