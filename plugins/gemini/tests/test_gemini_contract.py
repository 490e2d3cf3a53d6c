"""The shared backend contract, run against the gemini backend and its protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_gemini.backend import GeminiBackend
from ipfs_accelerate_gemini.server import GeminiServer

_CONTENTS = [{"role": "user", "parts": [{"text": "Say something."}]}]


class TestGeminiContract(BackendContract):
    backend_class = GeminiBackend
    server_class = GeminiServer
    samples = {
        "generate": {"model": "gemini-sim-flash", "contents": _CONTENTS},
        "chat": {"model": "gemini-sim-flash", "messages": [{"role": "user", "content": "Hi."}]},
        "embed": {"model": "text-embedding-sim", "text": "hello"},
        "batch_embed": {"model": "text-embedding-sim", "input": ["a", "b"]},
        "count_tokens": {"model": "gemini-sim-flash", "contents": _CONTENTS},
        "models": {},
        "model": {"model": "gemini-sim-pro"},
    }
    stream_sample = ("chat", {"model": "gemini-sim-flash", "contents": _CONTENTS})
    complete_json_samples = {"generate": {"model": "gemini-sim-flash", "contents": _CONTENTS},
                             "chat": {"model": "gemini-sim-flash", "contents": _CONTENTS}}
    plugin_module = "ipfs_accelerate_gemini.plugin"
