"""Groq backend for ipfs-accelerate (client side and server side of the protocol)."""

from __future__ import annotations

__version__ = "0.1.0"
