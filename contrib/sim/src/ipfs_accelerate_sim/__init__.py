"""A local simulator of the providers' APIs (every installed protocol server, one port),
with per-key rate limits, latency, injected errors and outages.  See :class:`Simulator`."""

from .config import SimConfig
from .simulator import SimApp, Simulator, key_label, load_protocol_servers, serve_forever

__all__ = ["SimConfig", "Simulator", "SimApp", "key_label", "load_protocol_servers", "serve_forever"]
