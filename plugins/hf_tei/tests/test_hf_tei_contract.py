"""The shared backend contract, run against the TEI protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_hf_tei.backend import TEIBackend
from ipfs_accelerate_hf_tei.server import TEIServer


class TestTEIContract(BackendContract):
    backend_class = TEIBackend
    server_class = TEIServer
    samples = {
        "embed": {"inputs": ["What is Deep Learning?", "and TEI?"]},
        "embeddings": {"input": ["OpenAI-compatible", "route"]},
        "embed_sparse": {"inputs": "sparse please"},
        "embed_all": {"inputs": "every token"},
        "rerank": {"query": "What is Deep Learning?", "texts": ["Deep Learning is", "no"]},
        "predict": {"inputs": "I like you"},
        "tokenize": {"inputs": "Hello world"},
        "info": {},
        "health": {},
    }
    plugin_module = "ipfs_accelerate_hf_tei.plugin"
