"""The backend contract suite, run against the echo test backend (proves the suite works)."""

from echo_backend import EchoBackend, EchoServer

from ipfs_accelerate_sim.testing import BackendContract


class TestEchoContract(BackendContract):
    backend_class = EchoBackend
    server_class = EchoServer
    samples = {"echo": {"n": 1}, "embed": {"inputs": ["a", "b"]}}
    stream_sample = ("stream", {"words": ["alpha", "beta", "gamma", "delta"]})
    complete_json_samples: dict = {}  # its one streamed operation only streams
