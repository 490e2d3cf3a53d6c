"""The shared backend contract, run against the OpenAI server side."""

from __future__ import annotations

from ipfs_accelerate_openai.backend import OpenAIBackend
from ipfs_accelerate_openai.server import OpenAIServer

from ipfs_accelerate_sim.testing import BackendContract

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


class TestOpenAIContract(BackendContract):
    backend_class = OpenAIBackend
    server_class = OpenAIServer
    base_path = "/v1"
    samples = {
        "chat": CHAT,
        "completions": {"model": "gpt-4o-mini", "prompt": "Once upon a time"},
        "embeddings": {"model": "text-embedding-3-small", "input": "hello"},
        "moderations": {"input": "hello"},
        "models": {},
        "model": {"model": "gpt-4o-mini"},
    }
    stream_sample = ("chat", CHAT)
    complete_json_samples = {
        "chat": CHAT,
        "completions": {"model": "gpt-4o-mini", "prompt": "Once upon a time", "max_tokens": 5},
    }
    plugin_module = "ipfs_accelerate_openai.plugin"
