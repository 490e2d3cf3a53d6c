"""Error classification from S3's XML bodies (and from the status where there is no body),
against moto's real answers and injected ones; secrets never shown."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from s3_kit_helpers import ACCESS, SECRET, MotoServer, attempts, make_client
from ipfs_accelerate_py.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    RateLimited,
    TransientError,
    UnexpectedRedirect,
)
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_s3_kit import S3Kit, s3_key
from s3_kit_proxy import is_op, s3_error


def test_no_such_key_is_not_found_and_not_retried(kit, client, bucket):
    before = attempts(client)
    with pytest.raises(NotFound) as info:
        kit.get_bytes(bucket, "missing")
    assert attempts(client) - before == 1
    err = info.value
    assert err.code == "NoSuchKey" and err.status == 404
    # moto's x-amz-request-id (the pipeline keeps its own id in request_id)
    provider_id = getattr(err, "provider_request_id", None) or err.request_id
    assert provider_id and not provider_id.startswith("req_")


def test_no_such_bucket_and_upload(kit, client):
    before = attempts(client)
    with pytest.raises(NotFound) as info:
        kit.put_bytes("no-such-bucket-here", "k", b"x")
    assert info.value.code == "NoSuchBucket"
    with pytest.raises(NotFound):
        kit.list_page("no-such-bucket-here")
    assert attempts(client) - before == 2


def test_head_of_missing_object_is_not_found_from_the_status(kit, client, bucket):
    before = attempts(client)
    with pytest.raises(NotFound) as info:
        kit.head(bucket, "missing")
    assert info.value.status == 404 and attempts(client) - before == 1


def test_no_such_upload(client, bucket):
    before = attempts(client)
    with pytest.raises(NotFound) as info:
        client.call("s3_kit", "abort_multipart_upload", {"bucket": bucket, "key": "k", "upload_id": "nope"})
    assert info.value.code == "NoSuchUpload" and attempts(client) - before == 1


def test_other_client_errors_are_invalid_requests(kit, client, bucket):
    kit.put_bytes(bucket, "keep", b"x")
    before = attempts(client)
    with pytest.raises(InvalidRequest) as info:
        kit.delete_bucket(bucket)
    assert info.value.code == "BucketNotEmpty" and info.value.status == 409
    assert attempts(client) - before == 1


@pytest.mark.parametrize("answer,cls", [
    (s3_error(503, "SlowDown", "Please reduce your request rate."), RateLimited),
    (s3_error(503, "ServiceUnavailable", "Reduce your request rate."), RateLimited),
    (s3_error(500, "InternalError", "We encountered an internal error."), TransientError),
    (s3_error(400, "RequestTimeout", "Your socket connection to the server was not read from"), TransientError),
    (ServerResponse(502, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"), TransientError),
    (ServerResponse(500, {}, b""), TransientError),
    (ServerResponse(200, {"Content-Type": "application/xml"}, b"<ListBucketResult><Name>"), TransientError),
    (ServerResponse(200, {"Content-Type": "application/xml"}, b""), TransientError),
], ids=["slowdown", "503", "internal", "request-timeout", "html-502", "empty-500", "cut-xml", "empty-200"])
def test_retryable_answers_are_retried(pkit, pclient, proxy, bucket, answer, cls):
    proxy.fail(is_op("GET", query="list-type"), answer)
    before = attempts(pclient)
    page = pkit.list_page(bucket)
    assert page["contents"] == []
    assert attempts(pclient) - before == 2
    # the class it was given, read from the same answer over HTTP
    proxy.fail(is_op("GET", query="list-type"), answer)
    resp = requests.get(f"{proxy.url}/{bucket}?list-type=2")
    err = pclient.backends["s3_kit"].classify_error(None, resp) if resp.status_code >= 400 else None
    if err is not None:
        assert type(err) is cls


@pytest.mark.parametrize("code", ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"])
def test_auth_codes_are_auth_errors_not_retried(pkit, pclient, proxy, bucket, code):
    proxy.fail(is_op("GET", query="list-type"), s3_error(403, code, "denied"))
    before = attempts(pclient)
    with pytest.raises(AuthError) as info:
        pkit.list_page(bucket)
    assert info.value.code == code and attempts(pclient) - before == 1


def test_redirects_are_errors_not_bodies(pkit, pclient, proxy, bucket):
    pkit.put_bytes(bucket, "r", b"object body")
    moved = s3_error(301, "PermanentRedirect", "The bucket you are attempting to access must be "
                     "addressed using the specified endpoint.")
    proxy.fail(is_op("GET", path_contains="/r"), moved)
    before = attempts(pclient)
    with pytest.raises(InvalidRequest) as info:
        pkit.get_bytes(bucket, "r")
    assert info.value.code == "PermanentRedirect" and attempts(pclient) - before == 1
    # The core never retries a redirect (issue 13.8): a 307 fails at once too, its S3 code kept.
    proxy.fail(is_op("GET", path_contains="/r"), s3_error(307, "TemporaryRedirect", "Please re-send"))
    with pytest.raises(UnexpectedRedirect) as info:
        pkit.get_bytes(bucket, "r")
    assert info.value.code == "TemporaryRedirect" and attempts(pclient) - before == 2


def test_slowdown_counts_as_rate_limited(pkit, pclient, proxy, bucket):
    proxy.fail(is_op("GET", query="list-type"), s3_error(503, "SlowDown", "slow"))
    pkit.list_page(bucket)
    assert pclient.stats().backends["s3_kit"]["rate_limited"] == 1


# ---------------------------------------------------------------------- real signatures
@pytest.fixture(scope="module")
def auth_moto():
    """moto with authentication on: the first three actions (IAM set-up) are free, then
    every request's SigV4 signature is checked against the IAM user's secret."""
    import boto3

    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="tester")
        created = iam.create_access_key(UserName="tester")["AccessKey"]
        iam.put_user_policy(UserName="tester", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        yield server, created["AccessKeyId"], created["SecretAccessKey"]
    finally:
        server.stop()


def test_signatures_verified_by_a_real_server(auth_moto, tmp_path):
    server, access, secret = auth_moto
    # moto's own canonicalisation mishandles '+', '=' and '/' in query values (boto3 fails
    # the same way), so these names stay plain.
    with make_client(server.url, keys=[s3_key(access, secret, name="iam")]) as c:
        kit = S3Kit(c)
        kit.create_bucket("signed")
        kit.put_bytes("signed", "dir/a b~c.txt", b"signed body")
        assert kit.get_bytes("signed", "dir/a b~c.txt") == b"signed body"
        assert [o["key"] for o in kit.list_all("signed", prefix="dir")] == ["dir/a b~c.txt"]
        src = tmp_path / "f.bin"
        src.write_bytes(b"f" * 6 * 1024 * 1024)
        kit.upload_file(src, "signed", "multi", part_size=5 * 1024 * 1024)
        assert kit.head("signed", "multi")["content_length"] == 6 * 1024 * 1024
        assert kit.delete_many("signed", ["dir/a b~c.txt", "multi"])["errors"] == []


def test_wrong_secret_and_unknown_access_key_are_auth_errors(auth_moto, caplog):
    server, access, secret = auth_moto
    wrong = s3_key(access, "test-key-1-wrong-secret", name="wrong")
    unknown = s3_key("AKIATESTUNKNOWN0001", "test-key-2", name="unknown")
    with make_client(server.url, keys=[wrong]) as c:
        with pytest.raises(AuthError) as info:
            S3Kit(c).list_buckets()
        assert info.value.code == "SignatureDoesNotMatch" and attempts(c) == 1
        with pytest.raises(AuthError):  # no body on HEAD: classified from the 403
            S3Kit(c).head("signed", "x")
    with make_client(server.url, keys=[unknown]) as c:
        with pytest.raises(AuthError) as info2:
            S3Kit(c).list_buckets()
        assert info2.value.code == "InvalidAccessKeyId"
    for err in (info.value, info2.value):
        for text in (str(err), repr(err)):
            assert access not in text and "test-key-1-wrong-secret" not in text
            assert "AKIATESTUNKNOWN0001" not in text


def test_rejected_credentials_are_taken_out_of_rotation(auth_moto, caplog):
    """Two credential pairs as keys: the bad one is disabled, the good one carries on."""
    server, access, secret = auth_moto
    keys = [s3_key("AKIATESTUNKNOWN0002", "test-key-3", name="bad"), s3_key(access, secret, name="good")]
    with caplog.at_level(logging.DEBUG):
        with make_client(server.url, keys=keys) as c:
            results = [S3Kit(c).list_buckets() for _ in range(4)]
            keys_stats = c.stats().keys
    assert all(isinstance(r, list) for r in results)
    assert keys_stats["s3_kit/bad"]["healthy"] is False
    assert "AKIATESTUNKNOWN0002" not in caplog.text and "test-key-3" not in caplog.text
    assert access not in caplog.text and secret not in caplog.text


# ---------------------------------------------------------------------- secrets
def test_secrets_absent_from_reprs_errors_and_stats(kit, client, bucket):
    backend = client.backends["s3_kit"]
    key = backend.config.keys[0]
    with pytest.raises(NotFound) as info:
        kit.get_bytes(bucket, "missing")
    from ipfs_accelerate_s3_kit.credentials import credentials_of

    shown = " ".join([repr(backend), str(backend), repr(key), str(key), repr(key.extra),
                      str(info.value), repr(info.value), repr(kit), repr(client),
                      json.dumps(client.stats().to_dict(), default=str),
                      repr(credentials_of(key)), str(credentials_of(key))])
    assert ACCESS not in shown and SECRET not in shown
