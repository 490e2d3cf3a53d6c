"""Example third-party backend: the (made-up) Lingo translation API.

Importing this package is cheap; the backend and its server are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
