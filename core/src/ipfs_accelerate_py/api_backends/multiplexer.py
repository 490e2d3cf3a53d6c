"""``ApiKeyMultiplexer``: the original's key multiplexing, done by the pipeline.

Each provider's keys go into one pipeline client (per strategy), so the pipeline's own
key selection, per-key concurrency limits, rate limiters and health tracking do the
multiplexing; ``get_<provider>_client()`` returns an adapter on that pipeline, and with
``key_name`` one pinned to that key.
"""

from __future__ import annotations

import threading
from typing import Any

from ..keys import ApiKey
from .base import CompatBackend, _Pipelines
from .providers import ALL

_PROVIDER_ALIASES = {"openai": "openai", "claude": "claude", "anthropic": "claude"}


class ApiKeyMultiplexer:
    """Several keys per provider behind one client each.

    >>> mux = ApiKeyMultiplexer()
    >>> mux.add_openai_key("key1", "sk-...")
    >>> client = mux.get_openai_client(strategy="least-loaded")
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._keys: dict[str, dict[str, ApiKey]] = {}
        self._pipes: dict[tuple[str, str, tuple[str, ...]], _Pipelines] = {}
        self._base_urls: dict[str, str] = {}

    @staticmethod
    def _provider(name: str) -> str:
        name = _PROVIDER_ALIASES.get(name, name)
        if name not in ALL:
            raise ValueError(f"unknown provider {name!r}; known: {', '.join(sorted(ALL))}")
        return name

    def add_key(self, provider: str, key_name: str, api_key: str, max_concurrent: int = 5) -> None:
        """Add (or replace) a named key of a provider."""
        provider = self._provider(provider)
        with self._lock:
            self._keys.setdefault(provider, {})[key_name] = ApiKey(
                secret=api_key, name=key_name, max_concurrent=max(1, int(max_concurrent)))

    def get_client(self, provider: str, key_name: str | None = None,
                   strategy: str = "round-robin") -> CompatBackend:
        """An adapter for ``provider``: pinned to ``key_name`` when given, else choosing
        among all keys with ``strategy`` ("round-robin" or "least-loaded")."""
        provider = self._provider(provider)
        with self._lock:
            keys = self._keys.get(provider)
            if not keys:
                raise ValueError(f"No {provider} API keys available")
            if key_name is not None and key_name not in keys:
                raise ValueError(f"No {provider} API key named {key_name!r}")
            names = tuple(sorted(keys))
            slot = (provider, strategy, names)
            pipes = self._pipes.get(slot)
            if pipes is None:
                pipes = self._pipes[slot] = _Pipelines()
            cls = ALL[provider]
            client = cls(_keys=list(keys.values()), _strategy=strategy, _pin=key_name,
                         _pipelines=pipes)
            client.max_concurrent_requests = max(k.max_concurrent or 1 for k in keys.values())
            return client

    def get_usage_stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per provider, per key: ``usage`` (attempts sent with it), ``queue_size`` (requests
        waiting for the provider), ``current_requests`` (in flight on that key)."""
        with self._lock:
            keys = {p: list(k) for p, k in self._keys.items()}
            slots = list(self._pipes.items())
        out: dict[str, dict[str, dict[str, int]]] = {}
        for provider, names in keys.items():
            out[provider] = {n: {"usage": 0, "queue_size": 0, "current_requests": 0} for n in names}
        for (provider, _strategy, _names), pipes in slots:
            for client in pipes.all():
                snap = client.stats()
                backend = snap.backends.get(ALL[provider].backend_name, {})
                for name, entry in out.get(provider, {}).items():
                    k = snap.keys.get(f"{ALL[provider].backend_name}/{name}")
                    if k:
                        entry["usage"] += int(k.get("attempts", 0)) + int(k.get("in_flight", 0))
                        entry["current_requests"] += int(k.get("in_flight", 0))
                    entry["queue_size"] += int(backend.get("queue_depth", 0) or 0)
        return out

    def close(self) -> None:
        with self._lock:
            slots = list(self._pipes.values())
            self._pipes.clear()
        for p in slots:
            p.close()

    def __getattr__(self, name: str) -> Any:
        # add_openai_key / get_openai_client / add_groq_key / ... for every provider.
        for prefix, suffix, method in (("add_", "_key", "add_key"), ("get_", "_client", "get_client")):
            if name.startswith(prefix) and name.endswith(suffix):
                provider = name[len(prefix):-len(suffix)]
                if _PROVIDER_ALIASES.get(provider, provider) in ALL:
                    fn = getattr(self, method)
                    return lambda *a, **kw: fn(provider, *a, **kw)
        raise AttributeError(f"'ApiKeyMultiplexer' object has no attribute {name!r}")

    # The four providers the original documented, spelled out for discoverability.
    def add_openai_key(self, key_name: str, api_key: str, max_concurrent: int = 5) -> None:
        self.add_key("openai", key_name, api_key, max_concurrent)

    def add_groq_key(self, key_name: str, api_key: str, max_concurrent: int = 5) -> None:
        self.add_key("groq", key_name, api_key, max_concurrent)

    def add_claude_key(self, key_name: str, api_key: str, max_concurrent: int = 5) -> None:
        self.add_key("claude", key_name, api_key, max_concurrent)

    def add_gemini_key(self, key_name: str, api_key: str, max_concurrent: int = 5) -> None:
        self.add_key("gemini", key_name, api_key, max_concurrent)

    def get_openai_client(self, key_name: str | None = None, strategy: str = "round-robin") -> CompatBackend:
        return self.get_client("openai", key_name, strategy)

    def get_groq_client(self, key_name: str | None = None, strategy: str = "round-robin") -> CompatBackend:
        return self.get_client("groq", key_name, strategy)

    def get_claude_client(self, key_name: str | None = None, strategy: str = "round-robin") -> CompatBackend:
        return self.get_client("claude", key_name, strategy)

    def get_gemini_client(self, key_name: str | None = None, strategy: str = "round-robin") -> CompatBackend:
        return self.get_client("gemini", key_name, strategy)
