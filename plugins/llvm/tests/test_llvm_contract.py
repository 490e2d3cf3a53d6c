"""The shared backend contract, run against the LLVM protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_llvm.backend import LlvmBackend
from ipfs_accelerate_llvm.server import LlvmServer

PROGRAM = 'int main() { printf("hello world\\n"); return 0; }'


class TestLlvmContract(BackendContract):
    backend_class = LlvmBackend
    server_class = LlvmServer
    plugin_module = "ipfs_accelerate_llvm.plugin"
    samples = {
        "infer": {"model": "resnet50", "input": [1.0, 2.0]},
        "batch_infer": {"model": "bert-base", "inputs": ["a", "b"]},
        "list_models": {},
        "model_info": {"model": "t5-small"},
        "execute": {"input": PROGRAM},
        "optimize": {"input": PROGRAM, "optimization_level": "O3"},
        "batch_execute": {"inputs": [PROGRAM, "int main() { return 3; }"]},
        "status": {},
        "reload_model": {"model": "resnet50"},
    }
