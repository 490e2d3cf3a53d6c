"""Every usage example of the original system's report, run unchanged against the
simulator (only the endpoint host differs: ``https://api.openai.com`` becomes the
simulator's ``/openai`` mount)."""

from __future__ import annotations

import textwrap
from typing import Any, Iterator

import pytest

from ipfs_accelerate_sim import SimConfig, Simulator

# The three examples, verbatim from the report's "Usage Examples" section.
BASIC = '''
from ipfs_accelerate_py.api_backends import openai_api

# Create client
client = openai_api(resources={}, metadata={"openai_api_key": "your-key"})

# Make request with automatic queue management and backoff
response = client.make_post_request(
    endpoint_url="https://api.openai.com/v1/chat/completions",
    data={
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "Hello world"}]
    }
)
'''

MULTIPLEXING = '''
from ipfs_accelerate_py.api_backends import ApiKeyMultiplexer

# Create multiplexer
multiplexer = ApiKeyMultiplexer()

# Add multiple API keys
multiplexer.add_openai_key("key1", "sk-api-key-1")
multiplexer.add_openai_key("key2", "sk-api-key-2")
multiplexer.add_openai_key("key3", "sk-api-key-3")

# Get client using least-loaded strategy
client = multiplexer.get_openai_client(strategy="least-loaded")

# Make request with automatic load balancing
response = client.make_post_request(
    endpoint_url="https://api.openai.com/v1/chat/completions",
    data={
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "Hello world"}]
    }
)
'''

PRIORITY = '''
from ipfs_accelerate_py.api_backends import claude

# Create client
client = claude(resources={}, metadata={"anthropic_api_key": "your-key"})

# Create request with high priority
request_info = {
    "endpoint_url": "https://api.anthropic.com/v1/messages",
    "data": {
        "model": "claude-3-opus-20240229",
        "messages": [{"role": "user", "content": "Critical request"}]
    },
    "queue_entry_time": time.time()
}

# Queue with high priority
future = client.queue_with_priority(request_info, client.PRIORITY_HIGH)

# Wait for result
while not future["completed"]:
    time.sleep(0.1)

# Get result
result = future["result"]
'''


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # The models the examples name exist on this simulator.
    cfg = SimConfig(latency=0.002, models={"openai": ["gpt-3.5-turbo"],
                                           "claude": ["claude-3-opus-20240229"]})
    with Simulator(cfg) as s:
        yield s


def run_example(code: str, sim: Simulator) -> dict[str, Any]:
    code = (code.replace("https://api.openai.com", sim.url + "/openai")
                .replace("https://api.anthropic.com", sim.url + "/claude"))
    ns: dict[str, Any] = {"time": __import__("time")}  # the report's snippets assume it
    exec(compile(textwrap.dedent(code), "<seed example>", "exec"), ns)
    ns["client"].close()
    return ns


def test_basic_request_with_queue_and_backoff(sim: Simulator) -> None:
    before = sim.stats()["backends"].get("openai", {}).get("ok", 0)
    ns = run_example(BASIC, sim)
    response = ns["response"]
    assert response["object"] == "chat.completion"
    assert response["model"] == "gpt-3.5-turbo"
    assert response["choices"][0]["message"]["content"]
    assert sim.stats()["backends"]["openai"]["ok"] == before + 1


def test_api_key_multiplexing(sim: Simulator) -> None:
    ns = run_example(MULTIPLEXING, sim)
    assert ns["response"]["choices"][0]["message"]["role"] == "assistant"
    usage = ns["multiplexer"].get_usage_stats()
    assert set(usage["openai"]) == {"key1", "key2", "key3"}
    assert sum(k["usage"] for k in usage["openai"].values()) == 1
    assert all(k["current_requests"] == 0 for k in usage["openai"].values())


def test_priority_queue_for_important_requests(sim: Simulator) -> None:
    ns = run_example(PRIORITY, sim)
    assert ns["future"]["completed"] and ns["future"]["error"] is None
    result = ns["result"]
    assert result["type"] == "message" and result["model"] == "claude-3-opus-20240229"
    assert result["content"][0]["text"]
    assert ns["client"].PRIORITY_HIGH == 0
