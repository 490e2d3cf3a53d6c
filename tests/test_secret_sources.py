"""Secrets: send-time credentials, URL credentials out of ids, the one redactor, the one key
source, keyed key ids and key validation."""

from __future__ import annotations

import hashlib
import logging
import pickle

import pytest

from ipfs_accelerate_py import BackendConfig, Client, Request
from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import AuthError, ConfigError, TransientError
from ipfs_accelerate_py.http import KeyAuth
from ipfs_accelerate_py.key_id_secret import set_key_id_secret
from ipfs_accelerate_py.key_source import keys_from_environment
from ipfs_accelerate_py.keys import ApiKey, Secret, key_fingerprint
from ipfs_accelerate_py.redaction import redact, redact_url
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer


class _Bearer(Backend):
    name = "bearer-test"
    default_base_url = "http://127.0.0.1:9"
    operations = {"echo": "echo"}

    def build_echo(self, request, key):
        from ipfs_accelerate_py.http import HttpRequest

        return HttpRequest("POST", self.url("/echo"), json={"x": 1})


def test_http_request_holds_no_credential_and_the_transport_applies_it(echo_server) -> None:
    backend = _Bearer(BackendConfig("bearer-test", base_url=echo_server.url))
    http = backend.build_request(Request("echo", {}, backend="bearer-test"),
                                 ApiKey("test-key-sendtime-1"))
    assert "test-key-sendtime-1" not in repr(http) and "test-key-sendtime-1" not in str(http.headers)
    assert isinstance(http.auth, KeyAuth) and "test-key-sendtime-1" not in repr(http.auth)
    with pytest.raises(TypeError):
        pickle.dumps(http.auth)
    from ipfs_accelerate_py.http import Transport

    t = Transport()
    resp = t.send(http, (5, 5))
    assert resp.json()["key"] == "test-key-sendtime-1"  # it was on the wire
    assert resp.request.headers["Authorization"] == "***"  # and is blanked after
    t.close()


def test_backends_declare_their_secret_headers() -> None:
    backend = _Bearer(BackendConfig("bearer-test"))
    backend.secret_headers = frozenset({"X-Custom-Key"})  # type: ignore[misc]
    auth = KeyAuth(backend, ApiKey("test-key-1"))
    assert "x-custom-key" in auth.secret_headers and "authorization" in auth.secret_headers


def test_credentials_in_a_base_url_stay_out_of_ids_and_reprs() -> None:
    url = "https://someone:pw-topsecret-9@api.example.test/v1?key=qk-topsecret-7#frag"
    backend = _Bearer(BackendConfig("bearer-test", base_url=url))
    for text in (backend.endpoint_id(), repr(backend), repr(backend.config)):
        assert "topsecret" not in text and "someone" not in text, text
    assert backend.endpoint_id() == "bearer-test@https://api.example.test/v1"
    # the password and query value were taught to the redactor: hidden even in free text
    assert "topsecret" not in redact("upstream said pw-topsecret-9 and qk-topsecret-7")
    assert redact_url("redis://:pw@[::1]:6380/0?password=x") == "redis://[::1]:6380/0"


def test_errors_events_and_logs_redact_keys_echoed_by_a_provider(pm, caplog) -> None:
    key = "test-key-echoed-77"

    def app(req):
        return ServerResponse.json({"error": {"message": f"bad key {req.bearer_token()} "
                                              f"(Authorization: Bearer {req.bearer_token()})"}},
                                   status=401)

    finished = []

    class Watch:
        from ipfs_accelerate_py import hookimpl

        @hookimpl
        def accelerate_on_finished(self, event):
            finished.append(event)

    pm.add_plugin(Watch(), name="watch")
    caplog.set_level(logging.DEBUG)
    with LocalServer(app) as srv, Client([BackendConfig("echo", keys=[key], base_url=srv.url)],
                                         plugin_manager=pm) as c:
        with pytest.raises(AuthError) as info:
            c.call("echo", "echo", {"n": 1})
    assert key not in str(info.value) and key not in repr(info.value)
    assert info.value.message.startswith("bad key ***")
    assert finished and all(key not in (e.error or "") for e in finished)
    assert key not in caplog.text
    # any error built with a key in its message, by any backend, is redacted
    assert key not in str(TransientError(f"HTTP 500: {key}"))
    assert key not in str(ConfigError("x", f"got {key}"))


def test_urllib3_debug_lines_lose_query_credentials(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with LocalServer(lambda req: ServerResponse.json({})) as srv:
        import requests

        requests.get(srv.url + "/x?key=AIzaFAKEFAKEFAKEFAKE1234&api_key=test-key-query-1", timeout=5)
    text = caplog.text
    assert "/x?key=***" in text and "FAKEFAKE" not in text and "test-key-query-1" not in text


def test_one_key_source_numbered_variants_and_one_id_per_key() -> None:
    env = {"OPENAI_API_KEY": "test-key-a1", "OPENAI_API_KEY_2": "test-key-b2",
           "OPENAI_API_KEY_10": "test-key-c3", "OPENAI_API_KEY_3": "test-key-a1",
           "OTHER": "x"}
    keys = keys_from_environment(["OPENAI_API_KEY"], env)
    assert [k.reveal() for k in keys] == ["test-key-a1", "test-key-b2", "test-key-c3"]
    # the id comes from the key, not from where it was found
    assert keys[0].key_id == ApiKey("test-key-a1").key_id == "key-" + key_fingerprint("test-key-a1")
    from ipfs_accelerate_py.cli.keys import env_keys
    from ipfs_accelerate_openai.backend import OpenAIBackend

    cli = env_keys(OpenAIBackend, env)
    lib = OpenAIBackend.keys_from(environ=env)
    assert [k.key_id for k in cli] == [k.key_id for k in lib] == [k.key_id for k in keys]


def test_key_ids_are_keyed_hashes() -> None:
    plain = hashlib.sha256(b"test-key-id-1").hexdigest()[:8]
    try:
        set_key_id_secret("deployment-one")
        one = ApiKey("test-key-id-1").key_id
        set_key_id_secret("deployment-two")
        two = ApiKey("test-key-id-1").key_id
    finally:
        set_key_id_secret(None)
    assert one != two and plain not in (one, two)
    with pytest.raises(ConfigError):
        set_key_id_secret("")


def test_id_secret_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("IPFS_ACCELERATE_KEY_ID_SECRET", "env-secret-1")
    a = key_fingerprint("test-key-1")
    monkeypatch.setenv("IPFS_ACCELERATE_KEY_ID_SECRET", "env-secret-2")
    assert key_fingerprint("test-key-1") != a


def test_id_secret_file_is_created_once_and_shared(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("IPFS_ACCELERATE_KEY_ID_SECRET", raising=False)
    path = tmp_path / "sub" / "id-secret"
    monkeypatch.setenv("IPFS_ACCELERATE_KEY_ID_FILE", str(path))
    first = key_fingerprint("test-key-1")
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert key_fingerprint("test-key-1") == first


@pytest.mark.parametrize("bad", ["test-key\r\n-inner", "test\x00key-1", "test-key\u2028x",
                                 "test-key\tinner"])
def test_keys_with_control_characters_are_refused_naming_the_source(bad) -> None:
    with pytest.raises(ConfigError) as info:
        keys_from_environment(["OPENAI_API_KEY"], {"OPENAI_API_KEY": bad})
    msg = str(info.value)
    assert "OPENAI_API_KEY" in msg and "control character" in msg
    assert bad not in msg and "inner" not in msg and "key-1" not in msg


def test_surrounding_whitespace_is_stripped() -> None:
    (key,) = keys_from_environment(["OPENAI_API_KEY"], {"OPENAI_API_KEY": " test-key-crlf-1\r\n"})
    assert key.reveal() == "test-key-crlf-1"
    assert Secret("test-key-crlf-1\n").reveal() == "test-key-crlf-1"
