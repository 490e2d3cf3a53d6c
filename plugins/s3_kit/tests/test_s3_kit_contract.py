"""The core's backend contract, run against the plugin's own S3 server side, plus that
server's signature checking (the protocol as the simulator speaks it)."""

from __future__ import annotations

import pytest
from ipfs_accelerate_py.errors import AuthError, NotFound
from ipfs_accelerate_sim.testing import BackendContract, LocalServer
from ipfs_accelerate_s3_kit import S3Kit, S3KitBackend, S3Server, s3_key

CONTRACT_ACCESS = "test-contract-access"


class TestS3KitContract(BackendContract):
    backend_class = S3KitBackend
    server_class = S3Server
    keys = (f"{CONTRACT_ACCESS}:test-key-1",)  # the ACCESS:SECRET string form
    options = {"addressing_style": "path"}
    plugin_module = "ipfs_accelerate_s3_kit.plugin"
    samples = {
        "list_buckets": {},
        "create_bucket": {"bucket": "contract"},
        "put_object": {"bucket": "contract", "key": "dir/o.txt", "body": b"contract body"},
        "head_object": {"bucket": "contract", "key": "dir/o.txt"},
        "get_object": {"bucket": "contract", "key": "dir/o.txt"},
        "copy_object": {"bucket": "contract", "key": "copy.txt", "source_bucket": "contract",
                        "source_key": "dir/o.txt"},
        "list_objects_v2": {"bucket": "contract", "prefix": "dir/"},
        "create_multipart_upload": {"bucket": "contract", "key": "mp"},
        "list_multipart_uploads": {"bucket": "contract"},
        "delete_object": {"bucket": "contract", "key": "copy.txt"},
        "delete_objects": {"bucket": "contract", "keys": ["dir/o.txt", "mp"]},
        "delete_bucket": {"bucket": "contract"},
    }

    def test_key_is_sent(self, client, server) -> None:
        """S3 sends the access key id in the SigV4 credential scope, never the secret."""
        client.call("s3_kit", "list_buckets", {})
        auth = server.last.header("authorization")
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={CONTRACT_ACCESS}/")
        assert "test-key-1" not in " ".join(server.last.headers.values())


@pytest.fixture
def signing_server():
    srv = LocalServer(S3Server(credentials={"test-sim-access": "test-key-1"}))
    yield srv
    srv.close()


def _client(url, key):
    from s3_kit_helpers import make_client

    return make_client(url, keys=[key])


def test_simulator_checks_signatures(signing_server, tmp_path):
    with _client(signing_server.url, s3_key("test-sim-access", "test-key-1")) as c:
        kit = S3Kit(c)
        kit.create_bucket("sim")
        kit.put_bytes("sim", "a+b=c/d e.txt", b"signed")
        assert kit.get_bytes("sim", "a+b=c/d e.txt") == b"signed"
        assert [o["key"] for o in kit.list_all("sim", prefix="a+b=c/")] == ["a+b=c/d e.txt"]
        src = tmp_path / "m.bin"
        src.write_bytes(b"x" * (11 * 1024 * 1024))
        kit.upload_file(src, "sim", "m.bin", part_size=5 * 1024 * 1024)
        assert kit.head("sim", "m.bin")["content_length"] == 11 * 1024 * 1024
        with pytest.raises(NotFound):
            kit.get_bytes("sim", "missing")
    with _client(signing_server.url, s3_key("test-sim-access", "test-key-2")) as c:
        with pytest.raises(AuthError) as info:
            S3Kit(c).list_buckets()
        assert info.value.code == "SignatureDoesNotMatch"
    with _client(signing_server.url, s3_key("test-unknown", "test-key-1")) as c:
        with pytest.raises(AuthError) as info:
            S3Kit(c).list_buckets()
        assert info.value.code == "InvalidAccessKeyId"


def test_simulator_paginates_and_groups(signing_server):
    with _client(signing_server.url, s3_key("test-sim-access", "test-key-1")) as c:
        kit = S3Kit(c)
        kit.create_bucket("pages")
        c.map([kit.request("put_object", {"bucket": "pages", "key": f"p/{i:03d}", "body": b""})
               for i in range(25)] + [kit.request("put_object", {"bucket": "pages", "key": "q/x", "body": b""})])
        assert [o["key"] for o in kit.iter_objects("pages", prefix="p/", page_size=10)] == \
            [f"p/{i:03d}" for i in range(25)]
        page = kit.list_page("pages", delimiter="/")
        assert page["common_prefixes"] == ["p/", "q/"] and page["contents"] == []
