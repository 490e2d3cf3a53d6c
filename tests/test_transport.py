"""The transport reads the environment once per origin, and still honours it."""

from __future__ import annotations

from ipfs_accelerate_py.http import HttpRequest, Transport


def test_proxies_from_the_environment_once_per_origin(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    t = Transport()
    assert t._proxies("http://api.example.invalid/v1/x")["http"] == "http://proxy.invalid:3128"
    assert t._proxies("http://127.0.0.1:8080/v1") is None  # NO_PROXY honoured
    assert set(t._environ_proxies) == {"http://api.example.invalid", "http://127.0.0.1:8080"}


def test_ca_bundle_from_the_environment(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert Transport().session.verify == str(bundle)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert Transport().session.verify is True


def test_a_callers_session_is_left_as_it_is(echo_server):
    import requests

    s = requests.Session()
    t = Transport(session=s)
    assert s.trust_env is True and t._proxies("http://x.invalid") is None
    resp = t.send(HttpRequest("POST", echo_server.url + "/echo", json={"n": 1}), (5, 5))
    assert resp.json()["echo"] == {"n": 1}
