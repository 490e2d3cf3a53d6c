"""Listing over many pages, and presigned URLs fetched with plain requests."""

from __future__ import annotations

import requests
from ipfs_accelerate_s3_kit import S3Kit


def test_pagination_over_2500_keys(kit, client, bucket):
    keys = [f"k/{i:05d}" for i in range(2500)]
    client.map([kit.request("put_object", {"bucket": bucket, "key": k, "body": k.encode()})
                for k in keys])
    before = client.stats().backends["s3_kit"]["attempts"]
    listed = kit.list_all(bucket, prefix="k/")
    assert [o["key"] for o in listed] == keys
    assert all(o["size"] == 7 for o in listed)
    assert client.stats().backends["s3_kit"]["attempts"] - before == 3  # 1000 + 1000 + 500

    first = kit.list_page(bucket, prefix="k/", max_keys=1000)
    assert first["is_truncated"] and first["key_count"] == 1000 and first["next_continuation_token"]
    second = kit.list_page(bucket, prefix="k/", max_keys=1000,
                           continuation_token=first["next_continuation_token"])
    assert second["contents"][0]["key"] == "k/01000"

    small_pages = list(kit.iter_objects(bucket, prefix="k/000", page_size=30))
    assert [o["key"] for o in small_pages] == keys[:100]

    assert kit.delete_many(bucket, keys)["errors"] == []
    assert kit.list_all(bucket) == []


def test_delimiter_lists_common_prefixes(kit, bucket):
    for k in ("a/1", "a/2", "b/1", "top"):
        kit.put_bytes(bucket, k, b"")
    page = kit.list_page(bucket, delimiter="/")
    assert page["common_prefixes"] == ["a/", "b/"]
    assert [o["key"] for o in page["contents"]] == ["top"]


def test_presigned_get_and_put_with_plain_requests(kit, bucket):
    put_url = kit.presigned_url("PUT", bucket, "pre/signed file.txt", expires_in=600)
    assert "X-Amz-Signature=" in put_url and "X-Amz-Expires=600" in put_url
    assert "X-Amz-Credential=test-access-key-1%2F" in put_url
    assert "test-key-1-secret" not in put_url
    r = requests.put(put_url, data=b"uploaded via presigned PUT")
    assert r.status_code == 200, r.text
    get_url = kit.presigned_url("GET", bucket, "pre/signed file.txt")
    r = requests.get(get_url)
    assert r.status_code == 200 and r.content == b"uploaded via presigned PUT"
    assert kit.get_bytes(bucket, "pre/signed file.txt") == b"uploaded via presigned PUT"


def test_presigned_url_uses_the_named_key(moto_server):
    from s3_kit_helpers import make_client
    from ipfs_accelerate_s3_kit import s3_key

    keys = [s3_key("test-access-a", "test-key-1", name="a"),
            s3_key("test-access-b", "test-key-2", name="b", region="eu-west-1")]
    with make_client(moto_server.url, keys=keys) as c:
        url = S3Kit(c).presigned_url("GET", "bkt", "x", key_name="b")
    assert "X-Amz-Credential=test-access-b%2F" in url and "%2Feu-west-1%2Fs3%2F" in url
