"""The shared backend contract, run against the Groq server side."""

from __future__ import annotations

from ipfs_accelerate_groq.backend import GroqBackend
from ipfs_accelerate_groq.server import GroqServer

from ipfs_accelerate_sim.testing import BackendContract

CHAT = {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "Say hello"}]}


class TestGroqContract(BackendContract):
    backend_class = GroqBackend
    server_class = GroqServer
    base_path = "/openai/v1"
    samples = {"chat": CHAT, "models": {}, "model": {"model": "llama-3.1-8b-instant"}}
    stream_sample = ("chat", CHAT)
    plugin_module = "ipfs_accelerate_groq.plugin"
