"""Example third-party strategy: smooth weighted round-robin over the keys with capacity."""

from __future__ import annotations

from .strategy import Weighted

__all__ = ["Weighted"]
