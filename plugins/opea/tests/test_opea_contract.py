"""The shared backend contract, run against the OPEA server side."""

from __future__ import annotations

from ipfs_accelerate_opea.backend import OPEABackend
from ipfs_accelerate_opea.server import OPEAServer

from ipfs_accelerate_sim.testing import BackendContract

CHAT = {"model": "Intel/neural-chat-7b-v3-3", "messages": [{"role": "user", "content": "What is OPEA?"}],
        "max_tokens": 17}


class TestOPEAContract(BackendContract):
    backend_class = OPEABackend
    server_class = OPEAServer
    base_path = "/v1"
    samples = {
        "chat": CHAT,
        "embeddings": {"input": "hello"},
        "rerank": {"query": "deep learning", "documents": ["cats", "deep learning is"]},
        "chatqna": {"messages": "What is OPEA?"},
        "health": {},
    }
    stream_sample = ("chat", CHAT)
    plugin_module = "ipfs_accelerate_opea.plugin"


class TestOPEAChatQnAContract(TestOPEAContract):
    """The gateway's own stream format (bytes-literal frames) under the same contract."""

    samples = {"chatqna": {"messages": "What is OPEA?"}}
    stream_sample = ("chatqna", {"messages": "What is deep learning and why is it useful?"})
