"""The clients compared, each behind the same small interface.

Every competitor is configured the way a careful user would configure it, with the same
attempt budget as our pipeline's default (6 attempts) where it retries at all:

- ``raw``: a ``requests.Session`` per thread, keys in round-robin, no retries: the
  physical limit of the machine and the simulator.
- ``tenacity``: the same plus ``@retry`` with full-jitter exponential backoff
  (``wait_random_exponential(multiplier=0.5, max=30)``, ``stop_after_attempt(6)``) on 429,
  5xx and connection errors; each attempt takes the next key.
- ``openai``: the official SDK's own retries (``max_retries=5``: backoff from 0.5 s with
  jitter, honouring ``retry-after-ms``/``retry-after``), one client per key, round-robin.
- ``litellm``: LiteLLM's ``Router`` with one deployment per key (``simple-shuffle``,
  ``num_retries=5``, its default cooldowns), each deployment's ``api_base`` the simulator.
- ``ours``: :class:`ipfs_accelerate_py.Client` with the OpenAI and least-loaded plugins
  only (see :data:`OUR_PLUGINS`), configured per scenario by the caller.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

import requests

COMPETITORS = ("raw", "tenacity", "openai", "litellm", "ours")
LABELS = {
    "raw": "raw requests.Session",
    "tenacity": "requests + tenacity",
    "openai": "openai SDK",
    "litellm": "LiteLLM Router",
    "ours": "ipfs-accelerate",
}
ATTEMPTS = 6  # the pipeline's default RetryPolicy.max_attempts; competitors get the same


class HttpStatusError(Exception):
    """A non-2xx answer (raw and tenacity)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Competitor:
    """``call`` blocks and raises on a lost request; ``submit`` returns a Future (a thread
    pool of ``pool`` workers around ``call`` unless the client has its own queue)."""

    name = "?"

    def __init__(self, pool: int) -> None:
        self._pool_size = pool
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def call(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Any:
        raise NotImplementedError

    def submit(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Future:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._pool_size, thread_name_prefix=self.name)
        return self._pool.submit(self.call, payload)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class _RoundRobin:
    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)
        self._n = itertools.count()  # next() on a count is atomic under the GIL

    def next(self) -> Any:
        return self.items[next(self._n) % len(self.items)]


class Raw(Competitor):
    name = "raw"

    def __init__(self, base_url: str, keys: Sequence[str], pool: int) -> None:
        super().__init__(pool)
        self.url = base_url + "/chat/completions"
        self.keys = _RoundRobin(keys)
        self._local = threading.local()

    def attempt(self, payload: Mapping[str, Any]) -> Any:
        s = getattr(self._local, "s", None)
        if s is None:
            s = self._local.s = requests.Session()
        r = s.post(self.url, json=payload, headers={"Authorization": f"Bearer {self.keys.next()}"},
                   timeout=(5, 30))
        if r.status_code >= 400:
            raise HttpStatusError(r.status_code)
        return r.json()

    def call(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Any:
        return self.attempt(payload)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, HttpStatusError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


class Tenacity(Raw):
    name = "tenacity"

    def __init__(self, base_url: str, keys: Sequence[str], pool: int) -> None:
        super().__init__(base_url, keys, pool)
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

        self._call = retry(wait=wait_random_exponential(multiplier=0.5, max=30),
                           stop=stop_after_attempt(ATTEMPTS),
                           retry=retry_if_exception(_retryable), reraise=True)(self.attempt)

    def call(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Any:
        return self._call(payload)


class OpenAISDK(Competitor):
    name = "openai"

    def __init__(self, base_url: str, keys: Sequence[str], pool: int) -> None:
        super().__init__(pool)
        import openai

        self.clients = _RoundRobin([openai.OpenAI(api_key=k, base_url=base_url,
                                                  max_retries=ATTEMPTS - 1, timeout=30.0)
                                    for k in keys])

    def call(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Any:
        return self.clients.next().chat.completions.create(**payload)

    def close(self) -> None:
        super().close()
        for c in self.clients.items:
            c.close()


def import_litellm() -> Any:
    """LiteLLM, kept off the network: its model cost map is read from the package, not
    downloaded, and telemetry is off (all traffic of the benchmark stays on 127.0.0.1)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


class LiteLLMRouter(Competitor):
    name = "litellm"

    def __init__(self, base_url: str, keys: Sequence[str], pool: int,
                 rpm: float | None = None) -> None:
        super().__init__(pool)
        import_litellm()
        from litellm import Router

        extra = {"rpm": int(rpm)} if rpm else {}
        model_list = [{"model_name": "bench",
                       "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base_url,
                                          "api_key": k, **extra}} for k in keys]
        self.router = Router(model_list=model_list, routing_strategy="simple-shuffle",
                             num_retries=ATTEMPTS - 1, timeout=30)

    def call(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Any:
        return self.router.completion(model="bench", messages=payload["messages"],
                                      max_tokens=payload.get("max_tokens"))


class Ours(Competitor):
    name = "ours"

    def __init__(self, base_url: str, keys: Sequence[str], pool: int, *,
                 rpm: float | None = None, burst: float | None = None,
                 breaker: Mapping[str, Any] | None = None, queue_size: int | None = None,
                 max_concurrent_per_key: int | None = None,
                 on_breaker: Callable[[float, str], None] | None = None) -> None:
        super().__init__(pool)
        from ipfs_accelerate_py import (ApiKey, BackendConfig, BreakerPolicy, Client,
                                        ClientConfig)

        pm = plugin_manager(on_breaker)
        api_keys = [ApiKey(k, requests_per_minute=rpm, burst=burst) for k in keys]
        cfg = ClientConfig(max_concurrency=pool,
                           queue_size=queue_size if queue_size is not None else 10_000,
                           breaker=BreakerPolicy(**breaker) if breaker else BreakerPolicy())
        self.client = Client([BackendConfig("openai", keys=api_keys, base_url=base_url,
                                            max_concurrent_per_key=max_concurrent_per_key or pool)],
                             cfg, plugin_manager=pm)

    def call(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Any:
        return self.client.call("openai", "chat", payload, priority=priority)

    def submit(self, payload: Mapping[str, Any], priority: str = "NORMAL") -> Future:
        return self.client.submit("openai", "chat", payload, priority=priority, block=True)

    def close(self) -> None:
        self.client.close(wait=False)


#: The plugins a user of this benchmark's workload installs: the OpenAI backend and the
#: key-selection strategy the client prefers when present.  Everything else installed in
#: a development environment (other backends, the Prometheus exporter that observes every
#: request, the Redis state store) stays out, as it would be out of that user's install.
OUR_PLUGINS = ("openai", "least-loaded")


def plugin_manager(on_breaker: Callable[[float, str], None] | None = None) -> Any:
    """A plugin manager with only :data:`OUR_PLUGINS` (plus, for the outage scenario, a
    monitor that records breaker changes)."""
    from importlib import metadata

    from ipfs_accelerate_py import hookimpl
    from ipfs_accelerate_py.plugins import ENTRY_POINT_GROUP, PluginManager

    others = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)} - set(OUR_PLUGINS)
    pm = PluginManager(disabled=others)
    if on_breaker is not None:
        class BreakerMonitor:
            @hookimpl
            def accelerate_on_breaker_changed(self, event: Any) -> None:
                on_breaker(event.time, event.new_state)

        pm.add_plugin(BreakerMonitor(), name="bench-breaker-monitor")
    return pm


def build(name: str, base_url: str, keys: Sequence[str], *, pool: int = 16,
          ours: Mapping[str, Any] | None = None, rpm: float | None = None) -> Competitor:
    """A competitor talking to ``base_url`` (the OpenAI protocol root, ``.../v1``)."""
    if name == "raw":
        return Raw(base_url, keys, pool)
    if name == "tenacity":
        return Tenacity(base_url, keys, pool)
    if name == "openai":
        return OpenAISDK(base_url, keys, pool)
    if name == "litellm":
        return LiteLLMRouter(base_url, keys, pool, rpm=rpm)
    if name == "ours":
        return Ours(base_url, keys, pool, rpm=rpm, **(ours or {}))
    raise ValueError(f"unknown competitor {name!r}; known: {', '.join(COMPETITORS)}")
