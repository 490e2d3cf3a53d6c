"""OPEA (GenAIComps microservices and gateways) backend for ipfs-accelerate."""

from __future__ import annotations

__version__ = "0.1.0"
