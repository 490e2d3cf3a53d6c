"""The simulator's policies: per-key 429s in each protocol's own format, latency, injected
errors, outages, determinism under a seed, and the counters."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import ErrorClass, RateLimited
from ipfs_accelerate_py.plugins import get_plugin_manager
from ipfs_accelerate_sim import SimConfig, Simulator, key_label

#: Every header a protocol might read its key from, so one request fits them all.
AUTH = {"Authorization": "Bearer test-key-1", "x-api-key": "test-key-1",
        "x-goog-api-key": "test-key-1"}

SERVERS = sorted(get_plugin_manager().protocol_servers())
BACKENDS = get_plugin_manager().backends()


def test_every_installed_protocol_is_mounted() -> None:
    with Simulator(SimConfig()) as sim:
        assert sim.mounted == SERVERS
        assert requests.get(sim.url + "/_sim/health").json()["mounted"] == SERVERS


@pytest.mark.parametrize("name", SERVERS)
def test_429_in_the_protocols_own_format(name: str) -> None:
    """Past the burst a key gets the protocol's 429; the backend's own client side
    classifies it as rate limited and reads a wait from its headers."""
    with Simulator(SimConfig(rps=0.5, burst=2, backends=[name])) as sim, requests.Session() as s:
        url = f"{sim.url}/{name}/v1/anything"
        first = [s.post(url, json={}, headers=AUTH) for _ in range(2)]
        assert all(r.status_code != 429 for r in first)
        r = s.post(url, json={}, headers=AUTH)
        # the protocol's own answer: a 429 almost everywhere, S3's 503 SlowDown
        assert r.status_code in (429, 503)
        if r.status_code == 429:
            # a wait, in a header or (Gemini's RetryInfo) in the body
            assert "retry-after" in r.headers or "retryDelay" in r.text
        stats = sim.stats()
        assert stats["rate_limited"] == 1
        # counted for the key the protocol reads (one of the headers above)
        assert [k for k, v in stats["keys"].items() if v["rate_limited"]] in (
            [f"{name}/{key_label('test-key-1')}"], [f"{name}/anonymous"])
        if name in BACKENDS:
            backend = BACKENDS[name](BackendConfig(name=name, base_url=sim.url + "/" + name))
            err = backend.classify_error(None, r)
            assert isinstance(err, RateLimited) and err.error_class is ErrorClass.RATE_LIMITED
            if r.status_code == 429:
                assert err.retry_after is not None and err.retry_after > 0


def test_openai_429_headers_and_success_headers() -> None:
    with Simulator(SimConfig(rps=1, burst=2, backends=["openai"])) as sim, requests.Session() as s:
        url = sim.url + "/openai/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        ok = s.post(url, json=body, headers=AUTH)
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "60"  # 1/s reported per minute
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        s.post(url, json=body, headers=AUTH)
        r = s.post(url, json=body, headers=AUTH)
        assert r.status_code == 429
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 0 < int(r.headers["retry-after-ms"]) <= 1000
        # another key has its own bucket
        other = s.post(url, json=body, headers={"Authorization": "Bearer test-key-2"})
        assert other.status_code == 200


def test_claude_429_headers() -> None:
    with Simulator(SimConfig(rps=1, burst=1, backends=["claude"])) as sim, requests.Session() as s:
        url = sim.url + "/claude/v1/messages"
        body = {"model": "claude-sim-haiku", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        h = {"x-api-key": "test-key-1", "anthropic-version": "2023-06-01"}
        assert s.post(url, json=body, headers=h).status_code == 200
        r = s.post(url, json=body, headers=h)
        assert r.status_code == 429
        assert r.json()["error"]["type"] == "rate_limit_error"
        assert r.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert r.headers["anthropic-ratelimit-requests-limit"] == "60"


def test_tokens_per_minute_limit() -> None:
    with Simulator(SimConfig(tokens_per_minute=100, backends=["openai"])) as sim, requests.Session() as s:
        url = sim.url + "/openai/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "max_tokens": 60, "messages": [{"role": "user", "content": "hi"}]}
        assert s.post(url, json=body, headers=AUTH).status_code == 200
        r = s.post(url, json=body, headers=AUTH)
        assert r.status_code == 429
        assert r.headers["x-ratelimit-remaining-tokens"] == "0"
        assert "tokens" in r.json()["error"]["message"]


def test_outage_window_answers_503_and_is_counted() -> None:
    with Simulator(SimConfig(outages=[(0.0, 3600.0)], backends=["openai"])) as sim:
        r = requests.post(sim.url + "/openai/v1/chat/completions", json={}, headers=AUTH)
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "server_error" or "error" in r.json()
        st = sim.stats()
        assert st["outage_calls"] == 1 and len(st["outage_times"]) == 1
        assert 0.0 <= st["outage_times"][0] < 3600
        assert requests.get(sim.url + "/_sim/stats").json()["outage_calls"] == 1


def test_outside_the_outage_window_answers_normally() -> None:
    with Simulator(SimConfig(outages=[(3000.0, 3600.0)], backends=["openai"])) as sim:
        r = requests.post(sim.url + "/openai/v1/chat/completions",
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                          headers=AUTH)
        assert r.status_code == 200
        assert sim.stats()["outage_calls"] == 0


def _statuses(seed: int, n: int = 40) -> list[tuple[str, int]]:
    out = []
    with Simulator(SimConfig(error_rate=0.3, seed=seed, backends=["openai"])) as sim, \
            requests.Session() as s:
        for i in range(n):
            key = f"test-key-{i % 3 + 1}"
            r = s.post(sim.url + "/openai/v1/chat/completions",
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": str(i)}]},
                       headers={"Authorization": f"Bearer {key}"})
            out.append((key, r.status_code, r.json().get("id")))
        stats = sim.stats()
    assert stats["errors_injected"] == sum(1 for _, st, _ in out if st == 500)
    return out


def test_deterministic_under_seed() -> None:
    a, b, c = _statuses(11), _statuses(11), _statuses(12)
    assert a == b
    assert a != c
    assert any(st == 500 for _, st, _ in a) and any(st == 200 for _, st, _ in a)


def test_error_injection_uses_the_protocols_error_format() -> None:
    with Simulator(SimConfig(error_rate=1.0, backends=["claude"])) as sim:
        r = requests.post(sim.url + "/claude/v1/messages", json={}, headers=AUTH)
        assert r.status_code == 500
        assert r.json()["type"] == "error"  # Anthropic's error envelope
        assert sim.stats()["errors_injected"] == 1


def test_stats_never_show_keys_and_reset() -> None:
    with Simulator(SimConfig(backends=["openai"])) as sim:
        requests.post(sim.url + "/openai/v1/models", headers={"Authorization": "Bearer sk-very-secret-1"})
        requests.get(sim.url + "/openai/v1/models", headers={"Authorization": "Bearer sk-very-secret-1"})
        text = requests.get(sim.url + "/_sim/stats").text
        assert "sk-very-secret" not in text
        assert key_label("sk-very-secret-1") in text
        assert requests.post(sim.url + "/_sim/reset").json() == {"reset": True}
        assert sim.stats()["requests"] == 0


def test_latency_is_applied_without_blocking_other_requests() -> None:
    import threading

    results: list[Any] = []
    with Simulator(SimConfig(latency=0.3, backends=["openai"])) as sim:
        def call() -> None:
            results.append(requests.get(sim.url + "/openai/v1/models", headers=AUTH).status_code)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 8
        # all eight were admitted before any answered: none waited for another's latency
        assert sim.stats()["requests"] == 8


def test_the_simulator_owns_the_quota_headers() -> None:
    """Without configured limits no quota headers reach the client (a protocol's own
    defaults would make it pace itself to a quota nobody set); with limits, only those."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with Simulator(SimConfig(backends=["openai"])) as sim:
        r = requests.post(sim.url + "/openai/v1/chat/completions", json=body, headers=AUTH)
        assert r.status_code == 200
        assert not [h for h in r.headers if h.lower().startswith("x-ratelimit-")]
    with Simulator(SimConfig(rps=10, backends=["openai"])) as sim:
        r = requests.post(sim.url + "/openai/v1/chat/completions", json=body, headers=AUTH)
        assert r.headers["x-ratelimit-limit-requests"] == "600"
        assert "x-ratelimit-limit-tokens" not in r.headers
