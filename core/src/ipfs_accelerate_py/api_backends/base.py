"""The original system's backend interface, on top of the real pipeline.

Every class here is a thin adapter: configuration comes from the original metadata keys
and environment variables (each backend plugin declares them), and every request goes
through :class:`ipfs_accelerate_py.Client` -- its priority queue, per-key limits,
retries, breaker and stats.  There is no second queue, retry loop or breaker here.

Differences from the original that migrating code may notice (all deliberate):
the "future" dict of :meth:`CompatBackend.queue_with_priority` is filled by the
pipeline's own future (no polling thread); errors are the pipeline's classified
errors (``ProviderError`` subclasses); a missing key fails at the first request with a
``ConfigError`` (a ``ValueError``) instead of a canned fake answer.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, ClassVar, Iterator, Mapping
from urllib.parse import urlsplit

from ..config import BackendConfig, BreakerPolicy, ClientConfig, RetryPolicy
from ..errors import QueueFullError
from ..keys import ApiKey, as_api_key
from ..request import Priority, Request

_STATES = {"closed": "CLOSED", "open": "OPEN", "half_open": "HALF_OPEN"}


def backend_class(name: str) -> type:
    """The installed backend class, or ImportError naming the pip package to install."""
    from ..plugins import distribution_for, get_plugin_manager

    backends = get_plugin_manager().backends()
    if name not in backends:
        raise ImportError(f"the {name!r} backend is not installed: pip install "
                          f"{distribution_for(name)}", name=f"ipfs_accelerate_{name}")
    return backends[name]


def _num(metadata: Mapping[str, Any], names: tuple[str, ...], default: float) -> float:
    for n in names:
        v = metadata.get(n)
        if v not in (None, ""):
            try:
                return float(v)
            except (TypeError, ValueError):
                from ..errors import ConfigError

                raise ConfigError(n, f"must be a number, got {v!r}") from None
    return default


class _Pipelines:
    """The pipeline clients of one adapter: one per base URL (and per one-off key)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[tuple[str, str | None], Any] = {}
        self.retired: list[Any] = []  # closed, kept so their stats stay readable
        self.last: Any = None

    def all(self) -> list[Any]:
        with self.lock:
            return list(self.clients.values()) + self.retired

    def close(self) -> None:
        with self.lock:
            live = list(self.clients.values())
            self.clients.clear()
        for c in live:
            c.close()
        with self.lock:
            self.retired.extend(live)


class CompatBackend:
    """Base of ``openai_api``, ``claude``, ``groq``... (the original constructor
    convention ``(resources=None, metadata=None)``).

    Settings read from ``metadata`` (with the original defaults): ``queue_size`` (100),
    ``max_concurrent_requests`` (5, per key), ``max_retries`` (5), ``initial_retry_delay``
    (1.0), ``backoff_factor`` (2.0), ``max_retry_delay`` (16.0; claude 60.0),
    ``failure_threshold`` (5), ``reset_timeout`` (30.0), ``timeout`` (60).  They may also
    be changed as attributes before the first request, as the original allowed.
    """

    backend_name: ClassVar[str] = ""
    PRIORITY_HIGH: ClassVar[int] = 0
    PRIORITY_NORMAL: ClassVar[int] = 1
    PRIORITY_LOW: ClassVar[int] = 2
    _max_retry_delay_default: ClassVar[float] = 16.0
    _prefix: ClassVar[str] = ""  # metadata prefix of the original (llvm_max_retries...)

    def __init__(self, resources: Mapping[str, Any] | None = None,
                 metadata: Mapping[str, Any] | None = None, *, _keys: list[ApiKey] | None = None,
                 _strategy: str | None = None, _pin: str | None = None,
                 _pipelines: _Pipelines | None = None) -> None:
        self.resources = dict(resources or {})
        self.metadata = dict(metadata or {})
        self._cls = backend_class(self.backend_name)
        md = self.metadata
        self._keys = list(_keys) if _keys is not None else list(self._cls.keys_from(md))
        self.base_url = (self._cls.base_url_from(md) or self._cls.default_base_url or "").rstrip("/")
        self.options: dict[str, Any] = dict(self._cls.options_from(md)) if hasattr(self._cls, "options_from") else {}
        p = self._prefix
        self.queue_size = int(_num(md, ("queue_size", p + "queue_size"), 100))
        self.max_concurrent_requests = int(_num(md, ("max_concurrent_requests", p + "max_concurrent"), 5))
        self.max_retries = int(_num(md, ("max_retries", p + "max_retries"), 5))
        self.initial_retry_delay = _num(md, ("initial_retry_delay", p + "retry_delay"), 1.0)
        self.backoff_factor = _num(md, ("backoff_factor", p + "backoff_factor"), 2.0)
        self.max_retry_delay = _num(md, ("max_retry_delay",), self._max_retry_delay_default)
        self.failure_threshold = int(_num(md, ("failure_threshold", p + "failure_threshold"), 5))
        self.reset_timeout = _num(md, ("reset_timeout", p + "reset_timeout"), 30.0)
        self.timeout = _num(md, ("timeout", p + "timeout"), 60.0)
        self.queue_enabled = True
        self._strategy = _strategy
        self._pin = _pin
        self._pipes = _pipelines or _Pipelines()
        self._probe: Any = None

    # ------------------------------------------------------------------ the pipeline
    def _client_config(self, nkeys: int) -> ClientConfig:
        strategy = self._strategy
        if strategy is not None:
            from ..plugins import get_plugin_manager

            if strategy not in get_plugin_manager().strategies():
                strategy = None  # the pipeline's default
        return ClientConfig(
            max_concurrency=max(1, self.max_concurrent_requests * max(1, nkeys)),
            queue_size=max(1, self.queue_size),
            strategy=strategy,
            retry=RetryPolicy(max_attempts=max(1, self.max_retries + 1),
                              base_delay=max(1e-3, self.initial_retry_delay),
                              multiplier=max(1.0, self.backoff_factor),
                              max_delay=max(1e-3, self.max_retry_delay)),
            breaker=BreakerPolicy(minimum_calls=max(1, self.failure_threshold),
                                  window_size=max(self.failure_threshold, 20),
                                  open_interval=max(1e-3, self.reset_timeout),
                                  max_open_interval=max(1e-3, self.reset_timeout)),
        )

    def _client(self, base_url: str | None = None, api_key: Any = None) -> Any:
        from ..client import Client

        base = (base_url or self.base_url).rstrip("/")
        one_off = as_api_key(api_key, name="api_key") if api_key else None
        ident = one_off.secret.fingerprint() if one_off is not None and one_off.secret else None
        with self._pipes.lock:
            client = self._pipes.clients.get((base, ident))
            if client is None:
                keys = [one_off] if one_off is not None else self._keys
                cfg = BackendConfig(name=self.backend_name, keys=keys, base_url=base,
                                    max_concurrent_per_key=max(1, self.max_concurrent_requests),
                                    read_timeout=self.timeout, options=self.options)
                client = Client([cfg], self._client_config(len(keys)))
                self._pipes.clients[(base, ident)] = client
            self._pipes.last = client
            return client

    # ------------------------------------------------------------------ endpoint mapping
    def _probe_backend(self) -> Any:
        if self._probe is None:
            self._probe = self._cls(BackendConfig(name=self.backend_name,
                                                  base_url="http://probe.invalid",
                                                  options=self.options))
        return self._probe

    def resolve(self, endpoint_url: str, data: Any, method: str = "POST") -> tuple[str, str]:
        """(base URL, operation) for a full endpoint URL: the operation whose request path
        (relative to the backend's base URL) is the longest suffix of the URL's path; the
        base URL is what precedes it.  So ``https://api.openai.com/v1/chat/completions`` is
        chat at ``https://api.openai.com/v1``, and the same path under a simulator works."""
        base, op, _ = self._resolve(endpoint_url, data, method)
        return base, op

    def _resolve(self, endpoint_url: str, data: Any, method: str = "POST"
                 ) -> tuple[str, str, str | None]:
        parts = urlsplit(endpoint_url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"endpoint_url must be an absolute URL, got {endpoint_url!r}")
        path = parts.path.rstrip("/")
        probe = self._probe_backend()
        probe_base = urlsplit(probe.base_url).path.rstrip("/")
        key = ApiKey(secret="probe-key", name="probe")
        payload = dict(data) if isinstance(data, Mapping) else {}
        # A model named in the path (Gemini's models/{m}:generateContent, LLVM's
        # models/{m}/infer) is tried when the payload names none.
        models: list[str | None] = [None]
        if "model" not in payload:
            for seg in path.split("/"):
                models.extend(x for x in seg.split(":")[:1] if x and x not in models)
        for model in models:
            best: tuple[int, str] | None = None
            trial = payload if model is None else {**payload, "model": model}
            for op in self._cls.operations:
                try:
                    http = probe.build_request(Request(operation=op, payload=trial), key)
                except Exception:
                    continue
                if http.method.upper() != method:
                    continue
                op_path = urlsplit(http.url).path.rstrip("/")
                if probe_base and op_path.startswith(probe_base + "/"):
                    op_path = op_path[len(probe_base):]
                if op_path and path.endswith(op_path) and (best is None or len(op_path) > best[0]):
                    best = (len(op_path), op)
            if best is not None:
                base = f"{parts.scheme}://{parts.netloc}{path[:len(path) - best[0]]}"
                return base, best[1], model
        raise ValueError(f"{type(self).__name__}: no {self.backend_name} operation answers "
                         f"{method} {parts.path}; operations: {', '.join(self._cls.operations)}")

    def _request(self, endpoint_url: str | None, data: Any, priority: Any = None,
                 request_id: str | None = None, stream: bool = False) -> tuple[Any, Request]:
        model = None
        if endpoint_url:
            base, op, model = self._resolve(endpoint_url, data)
        else:
            base, op = self.base_url, self._default_operation()
        payload = dict(data or {})
        if model is not None:
            payload["model"] = model
        stream = bool(stream or payload.pop("stream", False)) and op in self._cls.streaming_operations
        fields: dict[str, Any] = {"operation": op, "payload": payload, "backend": self.backend_name,
                                  "stream": stream, "key": self._pin}
        if priority is not None:
            fields["priority"] = priority
        if request_id:
            fields["request_id"] = str(request_id)
        return base, Request(**fields)

    def _default_operation(self) -> str:
        for op in ("chat", "messages", "generate", "embed", "infer"):
            if op in self._cls.operations:
                return op
        return next(iter(self._cls.operations))

    @staticmethod
    def _body(result: Any) -> Any:
        """What the original returned: the provider's decoded JSON answer."""
        if result.raw is not None:
            return result.raw
        from ..cli import result_json

        return result_json(result)

    # ------------------------------------------------------------------ the original API
    def make_post_request(self, endpoint_url: str, data: Any = None, api_key: str | None = None,
                          request_id: str | None = None, endpoint_id: str | None = None,
                          stream: bool = False, priority: int | None = None, **_: Any) -> Any:
        """POST ``data`` to ``endpoint_url`` through the pipeline; the decoded JSON answer
        (a generator of chunk dicts when streaming).  Raises the classified error."""
        base, req = self._request(endpoint_url, data, priority, request_id, stream)
        client = self._client(base, api_key)
        if req.stream:
            return self._stream(client, req)
        return self._body(client.call(req))

    def _stream(self, client: Any, req: Request) -> Iterator[dict[str, Any]]:
        rs = client.stream(req)
        try:
            for chunk in rs:
                yield {"text": chunk.text, "finish_reason": chunk.finish_reason,
                       "model": chunk.model, "raw": chunk.raw}
        finally:
            rs.close()

    def __getattr__(self, name: str) -> Any:
        # make_post_request_groq, make_post_request_hf_tgi, ... are the same call.
        if name.startswith("make_post_request_"):
            return self.make_post_request
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def queue_with_priority(self, request_info: dict[str, Any], priority: int | None = None) -> dict[str, Any]:
        """Queue ``{"endpoint_url", "data", "api_key"?, "request_id"?}`` at ``priority``
        (``PRIORITY_HIGH`` = 0 runs first).  Returns the original future dict
        ``{"result", "error", "completed"}``, filled when the request finishes."""
        if callable(request_info.get("func")):
            raise TypeError("queue_with_priority: queued callables ('func') are not supported; "
                            "pass endpoint_url and data so the request goes through the pipeline")
        future = request_info.get("future")
        if not isinstance(future, dict):
            future = {"result": None, "error": None, "completed": False}
            request_info["future"] = future
        request_info.setdefault("queue_entry_time", time.time())
        prio = Priority.NORMAL if priority is None else priority
        base, req = self._request(request_info.get("endpoint_url"), request_info.get("data"),
                                  prio, request_info.get("request_id"))
        req = req.evolve(stream=False)
        client = self._client(base, request_info.get("api_key"))
        try:
            fut = client.submit(req)
        except QueueFullError as exc:
            raise ValueError(f"Request queue is full ({self.queue_size} requests)") from exc

        def fill(f: Future) -> None:
            try:
                future["result"] = self._body(f.result())
            except BaseException as exc:
                future["error"] = exc
            future["completed"] = True

        future["_future"] = fut
        fut.add_done_callback(fill)
        return future

    def chat(self, messages: list[dict[str, Any]], model: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """One chat request; the original result envelope (``text``, ``model``, ``usage``,
        ``implementation_type``, ``raw_response``)."""
        op = next((o for o in ("chat", "messages", "generate") if o in self._cls.operations), None)
        if op is None:
            raise NotImplementedError(f"{self.backend_name} has no chat operation")
        payload = {"messages": messages, **kwargs}
        model = model or self.metadata.get("model") or self.metadata.get(f"{self.backend_name}_model")
        if model:
            payload["model"] = model
        result = self._client().call(Request(operation=op, payload=payload,
                                             backend=self.backend_name, key=self._pin))
        usage = result.usage
        return {"text": result.text, "model": result.model,
                "usage": None if usage is None else {"prompt_tokens": usage.prompt_tokens,
                                                     "completion_tokens": usage.completion_tokens,
                                                     "total_tokens": usage.total_tokens},
                "implementation_type": "REAL", "raw_response": result.raw}

    # ------------------------------------------------------------------ state and stats
    @property
    def circuit_state(self) -> str:
        """``"CLOSED"``, ``"OPEN"`` or ``"HALF_OPEN"`` (the pipeline's breaker)."""
        client = self._pipes.last
        if client is None:
            return "CLOSED"
        return _STATES.get(client.breaker_state(self.backend_name), "CLOSED")

    def check_circuit_breaker(self) -> bool:
        return self.circuit_state != "OPEN"

    def _snapshots(self) -> list[Any]:
        return [c.stats() for c in self._pipes.all()]

    @property
    def current_requests(self) -> int:
        """Requests in flight (the original's ``current_requests``/``active_requests``)."""
        snaps = self._snapshots()
        if self._pin is not None:
            return sum(s.keys.get(f"{self.backend_name}/{self._pin}", {}).get("in_flight", 0)
                       for s in snaps)
        return sum(s.in_flight for s in snaps)

    active_requests = current_requests

    @property
    def queue_length(self) -> int:
        return sum(s.queue_depth for s in self._snapshots())

    def get_stats(self, endpoint_id: str | None = None) -> dict[str, Any]:
        """Totals from the pipeline's stats, with the original's field names."""
        total = ok = retries = limited = tokens = 0
        lat: list[float] = []
        pipelines = []
        for snap in self._snapshots():
            b = snap.backends.get(self.backend_name)
            pipelines.append(snap.to_dict())
            if not b:
                continue
            total += b["requests"]
            ok += b["outcomes"].get("success", 0)
            retries += b["retries"]
            limited += b["rate_limited"]
            tokens += b["tokens"]["total"]
            if b.get("latency_p50") is not None:
                lat.append(b["latency_p50"])
        return {"total_requests": total, "successful_requests": ok, "failed_requests": total - ok,
                "retries": retries, "rate_limited": limited, "total_tokens": tokens,
                "latency_p50": max(lat) if lat else None, "queue_size": self.queue_length,
                "current_requests": self.current_requests, "circuit_state": self.circuit_state,
                "pipelines": pipelines}

    def reset_stats(self, endpoint_id: str | None = None) -> None:
        for c in self._pipes.all():
            c.reset_stats()
        with self._pipes.lock:
            self._pipes.retired.clear()

    def close(self) -> None:
        self._pipes.close()

    def __enter__(self) -> CompatBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} backend={self.backend_name} base_url={self.base_url} "
                f"keys={[k.key_id for k in self._keys]}>")
