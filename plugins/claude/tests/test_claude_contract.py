"""The shared backend contract, run against the claude backend and its protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_claude.backend import ClaudeBackend
from ipfs_accelerate_claude.server import ClaudeServer

_CHAT = {"model": "claude-sim-haiku", "max_tokens": 64,
         "messages": [{"role": "user", "content": "Say something."}]}


class TestClaudeContract(BackendContract):
    backend_class = ClaudeBackend
    server_class = ClaudeServer
    samples = {
        "messages": _CHAT,
        "chat": _CHAT,
        "count_tokens": {"model": "claude-sim-haiku", "messages": _CHAT["messages"]},
        "models": {},
        "model": {"model": "claude-sim-sonnet"},
    }
    stream_sample = ("messages", _CHAT)
    complete_json_samples = {"messages": _CHAT, "chat": _CHAT}
    plugin_module = "ipfs_accelerate_claude.plugin"
