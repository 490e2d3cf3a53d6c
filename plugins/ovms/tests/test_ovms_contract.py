"""The shared backend contract, run against the OVMS protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_ovms.backend import OvmsBackend
from ipfs_accelerate_ovms.server import OvmsServer

CHAT = {"model": "llama3", "messages": [{"role": "user", "content": "tell me about inference servers"}],
        "max_tokens": 8}


class TestOvmsContract(BackendContract):
    backend_class = OvmsBackend
    server_class = OvmsServer
    plugin_module = "ipfs_accelerate_ovms.plugin"
    samples = {
        "infer": {"model": "resnet", "version": 1, "inputs": [
            {"name": "0", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]},
        "live": {},
        "ready": {},
        "server_metadata": {},
        "model_metadata": {"model": "resnet"},
        "model_ready": {"model": "resnet", "version": 2},
        "predict": {"model": "resnet", "instances": [[1.0, 2.0, 3.0, 4.0]]},
        "model_status": {"model": "resnet"},
        "tfs_metadata": {"model": "resnet", "version": 1},
        "list_models": {},
        "chat": CHAT,
        "completions": {"model": "llama3", "prompt": "OpenVINO is"},
        "embeddings": {"model": "gte-large", "input": ["a", "b"]},
        "rerank": {"model": "bge-reranker", "query": "fast", "documents": ["fast models", "slow"]},
    }
    stream_sample = ("chat", CHAT)
    complete_json_samples = {"chat": CHAT,
                             "completions": {"model": "llama3", "prompt": "This is a test",
                                             "max_tokens": 5}}
