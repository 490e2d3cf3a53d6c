"""The shared backend contract, run against the Ollama protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_ollama.backend import OllamaBackend
from ipfs_accelerate_ollama.server import OllamaServer

MESSAGES = [{"role": "user", "content": "why is the sky blue?"}]


class TestOllamaContract(BackendContract):
    backend_class = OllamaBackend
    server_class = OllamaServer
    samples = {
        "chat": {"model": "llama3.2", "messages": MESSAGES},
        "generate": {"model": "llama3.2", "prompt": "why is the sky blue?"},
        "embed": {"model": "all-minilm", "input": ["a", "b"]},
        "tags": {},
        "show": {"model": "llama3.2"},
        "ps": {},
        "pull": {"model": "llama3.2"},
        "version": {},
    }
    stream_sample = ("chat", {"model": "llama3.2", "messages": MESSAGES})
    plugin_module = "ipfs_accelerate_ollama.plugin"


class TestOllamaGenerateStreamContract(TestOllamaContract):
    samples = {"generate": {"model": "llama3.2", "prompt": "why is the sky blue?"}}
    stream_sample = ("generate", {"model": "llama3.2", "prompt": "why is the sky blue?"})
