"""The compat layer beyond the seed examples: endpoint mapping for every installed
backend, metadata and environment keys, priorities, stats, the circuit state,
multiplexing strategies, and the ImportError of a missing plugin."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import wait
import time
from typing import Any, Iterator

import pytest

from test_cli_helpers import clean_env
from ipfs_accelerate_py import api_backends
from ipfs_accelerate_py.api_backends import ApiKeyMultiplexer
from ipfs_accelerate_py.api_backends.providers import ALL
from ipfs_accelerate_py.plugins import get_plugin_manager
from ipfs_accelerate_sim import SimConfig, Simulator, key_label

INSTALLED = get_plugin_manager().backends()
CHAT = [{"role": "user", "content": "Hello world"}]

#: (class, metadata, original-style endpoint path under the mount, data, check of the answer)
CASES: list[tuple[str, dict, str, dict, Any]] = [
    ("openai_api", {"openai_api_key": "test-key-1"}, "/v1/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT}, lambda r: r["choices"][0]["message"]["content"]),
    ("openai_api", {"openai_api_key": "test-key-1"}, "/v1/embeddings",
     {"model": "text-embedding-3-small", "input": ["a", "b"]}, lambda r: len(r["data"]) == 2),
    ("claude", {"claude_api_key": "test-key-1"}, "/v1/messages",
     {"model": "claude-sim-haiku", "max_tokens": 20, "messages": CHAT}, lambda r: r["content"][0]["text"]),
    ("groq", {"groq_api_key": "test-key-1"}, "/openai/v1/chat/completions",
     {"model": "llama-3.1-8b-instant", "messages": CHAT}, lambda r: r["choices"][0]["message"]["content"]),
    ("gemini", {"gemini_api_key": "test-key-1"}, "/v1beta/models/gemini-sim-flash:generateContent",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, lambda r: r["candidates"]),
    ("hf_tgi", {}, "/generate", {"inputs": "Once upon", "parameters": {"max_new_tokens": 5}},
     lambda r: r),
    ("hf_tei", {}, "/embed", {"inputs": ["a", "b"]}, lambda r: r),
    ("ollama", {}, "/api/chat", {"model": "llama3.2:latest", "messages": CHAT, "stream": False},
     lambda r: r["message"]["content"]),
    ("opea", {}, "/v1/chat/completions", {"model": "m", "messages": CHAT},
     lambda r: r["choices"][0]["message"]["content"]),
    ("llvm", {}, "/models/resnet50/infer", {"input": [1, 2, 3]}, lambda r: r),
]
# Cases for backends whose plugin is installed (the workspace installs them all).
CASES = [c for c in CASES if getattr(api_backends, c[0]).backend_name in INSTALLED]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(latency=0.002)) as s:
        yield s


def _cls(name: str) -> Any:
    return getattr(api_backends, name)


@pytest.mark.parametrize("name,metadata,path,data,check", CASES,
                         ids=[f"{c[0]}{c[2]}" for c in CASES])
def test_make_post_request_maps_the_endpoint_to_the_operation(sim: Simulator, name: str, metadata: dict,
                                                               path: str, data: dict, check: Any) -> None:
    cls = _cls(name)
    client = cls(resources={}, metadata=metadata)
    try:
        mount = f"{sim.url}/{cls.backend_name}"
        base, op = client.resolve(mount + path, data)
        assert base.startswith(mount)
        answer = client.make_post_request(mount + path, data)
        assert check(answer)
        # the original's per-backend spelling works too
        getattr(client, f"make_post_request_{cls.backend_name}")(mount + path, data)
        assert client.get_stats()["successful_requests"] == 2
    finally:
        client.close()


def test_unknown_endpoint_is_a_clear_error(sim: Simulator) -> None:
    client = api_backends.openai_api(metadata={"openai_api_key": "test-key-1"})
    with pytest.raises(ValueError, match="no openai operation answers POST /v1/nothing"):
        client.make_post_request(sim.url + "/v1/nothing", {})


def test_keys_from_environment_and_never_in_repr(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret-1")
    monkeypatch.setenv("OPENAI_BASE_URL", sim.url + "/openai/v1")
    client = api_backends.openai_api()
    try:
        assert client.base_url == sim.url + "/openai/v1"
        r = client.make_post_request(sim.url + "/openai/v1/chat/completions",
                                     {"model": "gpt-4o-mini", "messages": CHAT})
        assert r["choices"]
        assert "sk-env-secret-1" not in repr(client) and "sk-env-secret-1" not in str(client.get_stats())
        assert sim.stats()["keys"][f"openai/{key_label('sk-env-secret-1')}"]["ok"] >= 1
        # chat() with the original envelope, against the configured base URL
        out = client.chat(CHAT, model="gpt-4o-mini")
        assert out["text"] and out["implementation_type"] == "REAL" and out["usage"]["total_tokens"] > 0
    finally:
        client.close()


def test_api_key_argument_and_metadata_settings(sim: Simulator) -> None:
    client = api_backends.openai_api(resources=None, metadata={"max_concurrent_requests": 3,
                                                               "max_retries": 2, "queue_size": 7},
                                     api_key="test-key-9")
    assert client.max_concurrent_requests == 3 and client.max_retries == 2 and client.queue_size == 7
    assert client.PRIORITY_HIGH == 0 and client.PRIORITY_NORMAL == 1 and client.PRIORITY_LOW == 2
    assert api_backends.PRIORITY_LOW == 2
    try:
        client.make_post_request(sim.url + "/openai/v1/chat/completions",
                                 {"model": "gpt-4o-mini", "messages": CHAT})
        assert sim.stats()["keys"][f"openai/{key_label('test-key-9')}"]["ok"] >= 1
        # a one-off key per request, as the original allowed
        client.make_post_request(sim.url + "/openai/v1/chat/completions",
                                 {"model": "gpt-4o-mini", "messages": CHAT}, api_key="test-key-8")
        assert sim.stats()["keys"][f"openai/{key_label('test-key-8')}"]["ok"] == 1
    finally:
        client.close()


def test_high_priority_runs_before_queued_low_priority() -> None:
    with Simulator(SimConfig(latency=0.05, backends=["openai"])) as sim:
        client = api_backends.openai_api(metadata={"openai_api_key": "test-key-1",
                                                   "max_concurrent_requests": 1})
        order: list[str] = []
        lock = threading.Lock()
        url = sim.url + "/openai/v1/chat/completions"
        futures = []

        def queue(label: str, prio: int) -> None:
            fut = client.queue_with_priority({"endpoint_url": url, "data": {
                "model": "gpt-4o-mini", "messages": CHAT}}, prio)
            fut["_future"].add_done_callback(lambda f: (lock.acquire(), order.append(label),
                                                        lock.release()))
            futures.append(fut)

        queue("first", client.PRIORITY_NORMAL)
        while client.current_requests == 0 and not futures[0]["completed"]:
            time.sleep(0.001)  # the only worker is busy with "first" from here on
        for i in range(4):
            queue(f"low{i}", client.PRIORITY_LOW)
        queue("high", client.PRIORITY_HIGH)
        done, pending = wait([f["_future"] for f in futures], timeout=60)
        assert not pending
        client.close()
    assert order[0] == "first" and order[1] == "high"
    assert all(f["error"] is None and f["result"]["choices"] for f in futures)
    assert all(isinstance(f["result"], dict) for f in futures)


def test_errors_fill_the_future_dict_and_stats(sim: Simulator) -> None:
    client = api_backends.openai_api(metadata={"openai_api_key": "test-key-1"})
    fut = client.queue_with_priority({"endpoint_url": sim.url + "/openai/v1/chat/completions",
                                      "data": {"model": "no-such-model", "messages": CHAT}})
    wait([fut["_future"]], timeout=30)
    assert fut["completed"] and fut["result"] is None and type(fut["error"]).__name__ == "NotFound"
    stats = client.get_stats()
    assert stats["total_requests"] == 1 and stats["failed_requests"] == 1
    client.reset_stats()
    assert client.get_stats()["total_requests"] == 0
    with pytest.raises(TypeError, match="func"):
        client.queue_with_priority({"func": print})
    client.close()


def test_circuit_state_opens_during_an_outage_and_work_is_not_lost() -> None:
    with Simulator(SimConfig(outages=[(0.0, 1.5)], backends=["openai"])) as sim:
        client = api_backends.openai_api(metadata={"openai_api_key": "test-key-1",
                                                   "failure_threshold": 2, "reset_timeout": 0.2,
                                                   "initial_retry_delay": 0.01})
        assert client.circuit_state == "CLOSED" and client.check_circuit_breaker()
        futures = [client.queue_with_priority({"endpoint_url": sim.url + "/openai/v1/chat/completions",
                                               "data": {"model": "gpt-4o-mini", "messages": CHAT}})
                   for _ in range(3)]
        seen = set()
        while not all(f["completed"] for f in futures):
            seen.add(client.circuit_state)
            time.sleep(0.005)
        client.close()
        assert "OPEN" in seen
        assert all(f["error"] is None for f in futures)
        assert client.circuit_state in ("CLOSED", "HALF_OPEN")
        assert sim.stats()["outage_calls"] >= 2


def test_multiplexer_pinned_key_and_round_robin(sim: Simulator) -> None:
    mux = ApiKeyMultiplexer()
    with pytest.raises(ValueError, match="No openai API keys"):
        mux.get_openai_client()
    for i in (1, 2, 3):
        mux.add_openai_key(f"key{i}", f"test-mux-{i}", max_concurrent=2)
    url = sim.url + "/openai/v1/chat/completions"
    pinned = mux.get_openai_client(key_name="key2")
    for _ in range(3):
        pinned.make_post_request(url, {"model": "gpt-4o-mini", "messages": CHAT})
    assert sim.stats()["keys"][f"openai/{key_label('test-mux-2')}"]["ok"] == 3
    rr = mux.get_openai_client(strategy="round-robin")
    for _ in range(6):
        rr.make_post_request(url, {"model": "gpt-4o-mini", "messages": CHAT})
    usage = mux.get_usage_stats()["openai"]
    assert usage["key2"]["usage"] >= 3
    assert sum(u["usage"] for u in usage.values()) == 9
    assert all(u["usage"] >= 1 for u in usage.values())  # round-robin touched every key
    with pytest.raises(ValueError, match="named 'key9'"):
        mux.get_openai_client(key_name="key9")
    # the other documented providers, and any installed one by name
    mux.add_claude_key("c1", "test-key-1")
    c = mux.get_claude_client()
    assert c.make_post_request(sim.url + "/claude/v1/messages", {
        "model": "claude-sim-haiku", "max_tokens": 10, "messages": CHAT})["content"]
    assert "c1" in mux.get_usage_stats()["claude"]
    mux.add_groq_key("g1", "test-key-1")
    assert mux.get_groq_client().backend_name == "groq"
    mux.close()


def test_missing_plugin_raises_importerror_naming_the_package() -> None:
    code = (
        "import ipfs_accelerate_py.api_backends as ab\n"
        "from ipfs_accelerate_py.api_backends import groq, ApiKeyMultiplexer\n"
        "try:\n"
        "    groq(resources={}, metadata={'groq_api_key': 'test-key-1'})\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
    )
    env = clean_env({"IPFS_ACCELERATE_DISABLE_PLUGINS": "groq"})
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "IMPORTERROR" in r.stdout and "pip install ipfs-accelerate-groq" in r.stdout


def test_every_original_class_is_exported() -> None:
    from ipfs_accelerate_py.api_backends import (  # noqa: F401
        ApiKeyMultiplexer, claude, gemini, groq, hf_tei, hf_tgi, llvm, ollama, openai_api, opea, ovms, s3_kit)

    assert {c.backend_name for c in (openai_api, claude, groq, gemini, hf_tgi, hf_tei, ollama, llvm,
                                     ovms, opea, s3_kit)} == set(ALL)


def test_streaming_through_make_post_request(sim: Simulator) -> None:
    client = api_backends.openai_api(metadata={"openai_api_key": "test-key-1"})
    url = sim.url + "/openai/v1/chat/completions"
    data = {"model": "gpt-4o-mini", "messages": CHAT}
    chunks = list(client.make_post_request(url, {**data, "stream": True}))
    whole = client.make_post_request(url, data)
    assert len(chunks) > 2
    assert "".join(c["text"] for c in chunks) == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["finish_reason"] == "stop" or any(c["finish_reason"] for c in chunks)
    client.close()
