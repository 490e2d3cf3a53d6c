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


def _as_sent(server, i):
    r = server.requests[i]
    headers = {k: v for k, v in r.headers.items() if k not in ("host", "content-length")}
    return r.method, r.path, dict(r.query), headers, r.body


def test_our_session_sends_exactly_what_session_request_would(echo_server):
    # The transport prepares requests for its own session itself (no per-call re-merging of
    # the session's settings): what reaches the server must be what requests' own
    # Session.request sends for the same request and the same session settings.
    import requests
    from requests.auth import HTTPBasicAuth

    def configure(session: requests.Session) -> None:
        session.trust_env = False
        session.headers["X-Session"] = "from-session"
        session.headers["X-Dropped"] = "session-default"
        session.params = {"api-version": "2024-06-01"}
        session.cookies.set("sid", "cookie-1", domain="127.0.0.1", path="/")
        session.hooks["response"].append(lambda r, *a, **k: r.headers.__setitem__("x-hooked", "1"))

    ours = Transport()
    configure(ours.session)
    reference = requests.Session()
    configure(reference)
    req = dict(method="POST", url=echo_server.url + "/echo?q=1",
               headers={"X-Request": "r", "X-Dropped": None}, params={"n": 2, "none": None},
               json={"n": 1}, auth=HTTPBasicAuth("test-user", "test-pass-1"))
    resp = ours.send(HttpRequest(**req), (5, 5))
    assert ours._environ_proxies is not None  # the own-session path was the one taken
    ref = reference.request(req["method"], req["url"], headers=req["headers"],
                            params=req["params"], json=req["json"], auth=req["auth"],
                            timeout=(5, 5), allow_redirects=False)
    assert resp.status_code == ref.status_code == 200
    assert resp.headers["x-hooked"] == ref.headers["x-hooked"] == "1"
    assert _as_sent(echo_server, 0) == _as_sent(echo_server, 1)
    method, path, query, headers, _ = _as_sent(echo_server, 0)
    assert query == {"q": ["1"], "api-version": ["2024-06-01"], "n": ["2"]}
    assert headers["x-session"] == "from-session" and "x-dropped" not in headers
    assert headers["cookie"] == "sid=cookie-1" and headers["authorization"].startswith("Basic ")


def test_our_session_keeps_the_cookies_a_server_sets(echo_server):
    from ipfs_accelerate_py.server import ServerResponse

    echo_server.script(ServerResponse(200, {"Set-Cookie": "lb=node-2; Path=/"}, b"{}"))
    t = Transport()
    t.send(HttpRequest("POST", echo_server.url + "/echo", json={}), (5, 5))
    t.send(HttpRequest("POST", echo_server.url + "/echo", json={}), (5, 5))
    assert "cookie" not in echo_server.requests[0].headers
    assert echo_server.requests[1].headers["cookie"] == "lb=node-2"


def test_credentials_in_the_base_url_are_sent_as_basic_auth(pm, echo_server):
    import base64

    from ipfs_accelerate_py import BackendConfig, Client

    host = echo_server.url.split("://", 1)[1]
    with Client([BackendConfig("echo", base_url=f"http://test-user:test-pass-1@{host}")],
                plugin_manager=pm) as c:
        c.call("echo", "echo", {"n": 1})
        c.call("echo", "echo", {"n": 2})  # and not only the first time
    for req in echo_server.requests:
        assert req.headers["authorization"] == "Basic " + base64.b64encode(
            b"test-user:test-pass-1").decode()
