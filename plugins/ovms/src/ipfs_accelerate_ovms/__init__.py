"""OpenVINO Model Server (OVMS) backend for ipfs-accelerate."""

__version__ = "0.1.0"
