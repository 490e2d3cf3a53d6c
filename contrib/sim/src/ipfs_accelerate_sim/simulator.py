"""The local provider simulator: every installed protocol server behind one port.

Each protocol is mounted under ``/<backend name>`` (a client's base URL is
``f"{sim.url}/openai/v1"``); the prefix is stripped before the request reaches the
protocol server.  In front of the protocols the simulator applies, per API key (as the
protocol's ``key_of`` reads it): rate limits answered with the protocol's own 429 and
headers, latency, injected errors and outage windows, and it counts what it did.

    with Simulator(SimConfig(rps=20, burst=5, outages=[(2, 4)])) as sim:
        ...  # point clients at sim.url + "/openai/v1"
        sim.stats()
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
import warnings
from typing import Any, Mapping

from ipfs_accelerate_py.keys import key_fingerprint
from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

from .config import SimConfig
from .httpd import start_server
from .limits import KeyQuota

MAX_OUTAGE_TIMES = 100_000
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_new_tokens", "num_predict",
                 "maxOutputTokens")


def key_label(key: str | None) -> str:
    """How a key appears in the simulator's stats: never the key itself, but the same
    ``key-<fingerprint>`` id an unnamed :class:`~ipfs_accelerate_py.keys.ApiKey` gets."""
    if not key:
        return "anonymous"
    return "key-" + key_fingerprint(key)


def _models_kwarg(cls: type, extra: tuple[str, ...]) -> dict[str, Any]:
    """``models=`` for a server whose constructor takes a list of model names."""
    if not extra:
        return {}
    try:
        param = inspect.signature(cls).parameters.get("models")
    except (TypeError, ValueError):
        return {}
    if param is None:
        return {}
    default = param.default
    if isinstance(default, (tuple, list)) and all(isinstance(m, str) for m in default):
        return {"models": tuple(default) + tuple(m for m in extra if m not in default)}
    return {}


def load_protocol_servers(seed: int, names: tuple[str, ...] | None = None,
                          plugin_manager: Any = None,
                          models: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, ProtocolServer]:
    """Instantiate every installed protocol server (or those named)."""
    if plugin_manager is None:
        from ipfs_accelerate_py.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    classes = plugin_manager.protocol_servers()
    if names is not None:
        missing = [n for n in names if n not in classes]
        if missing:
            from ipfs_accelerate_py.errors import UnknownPluginError
            from ipfs_accelerate_py.plugins import distribution_for

            raise UnknownPluginError("protocol server", missing[0], list(classes),
                                     f"install it with: pip install {distribution_for(missing[0])}")
        classes = {n: classes[n] for n in names}
    servers: dict[str, ProtocolServer] = {}
    for name, cls in sorted(classes.items()):
        try:
            servers[name] = cls(seed=seed, **_models_kwarg(cls, (models or {}).get(name, ())))
        except TypeError:
            servers[name] = cls()
        except Exception as exc:  # one broken plugin must not take the simulator down
            warnings.warn(f"simulator: skipped protocol {name!r}: {type(exc).__name__}: {exc}",
                          stacklevel=2)
    return servers


class _Counters:
    __slots__ = ("requests", "ok", "rate_limited", "errors_injected", "outage_calls", "statuses")

    def __init__(self) -> None:
        self.requests = self.ok = self.rate_limited = self.errors_injected = self.outage_calls = 0
        self.statuses: dict[int, int] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "ok": self.ok, "rate_limited": self.rate_limited,
                "errors_injected": self.errors_injected, "outage_calls": self.outage_calls,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


class SimApp:
    """The request handler (runs in the event loop; the counters are read from any thread)."""

    def __init__(self, config: SimConfig, servers: Mapping[str, ProtocolServer]) -> None:
        self.config = config
        self.servers = dict(servers)
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self._quotas: dict[tuple[str, str], KeyQuota] = {}
        self._rl_names = {name: self._limit_header_names(srv) for name, srv in self.servers.items()}
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total = _Counters()
        self.per_backend: dict[str, _Counters] = {}
        self.per_key: dict[str, _Counters] = {}
        self.outage_times: list[float] = []
        self.server_errors = 0

    @staticmethod
    def _limit_header_names(server: ProtocolServer) -> frozenset[str]:
        """The rate-limit headers this protocol writes (lower-cased)."""
        probe = RateLimitInfo(limit_requests=1, remaining_requests=1, reset_requests=1.0,
                              limit_tokens=1, remaining_tokens=1, reset_tokens=1.0)
        try:
            return frozenset(h.lower() for h in server.rate_limit_headers(probe))
        except Exception:
            return frozenset()

    # -- policy ------------------------------------------------------------------------
    def _rng(self, scope: tuple[str, str]) -> random.Random:
        rng = self._rngs.get(scope)
        if rng is None:
            rng = self._rngs[scope] = random.Random(f"{self.config.seed}:{scope[0]}:{scope[1]}")
        return rng

    def _quota(self, scope: tuple[str, str], now: float) -> KeyQuota | None:
        cfg = self.config
        if cfg.rps is None and cfg.tokens_per_minute is None:
            return None
        q = self._quotas.get(scope)
        if q is None:
            q = self._quotas[scope] = KeyQuota(cfg.rps, cfg.burst, cfg.tokens_per_minute, now,
                                                 cfg.header_style)
        return q

    @staticmethod
    def _cost(req: ServerRequest) -> float:
        cost = len(req.body) / 4.0
        if req.body[:1] == b"{":
            try:
                body = json.loads(req.body)
            except ValueError:
                body = None
            if isinstance(body, dict):
                for f in _TOKEN_FIELDS:
                    v = body.get(f)
                    if isinstance(v, int):
                        cost += v
                        break
        return max(1.0, cost)

    def in_outage(self, elapsed: float) -> bool:
        return any(s <= elapsed < e for s, e in self.config.outages)

    def _count(self, backend: str, label: str, field: str | None, status: int) -> None:
        with self.lock:
            b = self.per_backend.get(backend)
            if b is None:
                b = self.per_backend[backend] = _Counters()
            k = self.per_key.get(f"{backend}/{label}")
            if k is None:
                k = self.per_key[f"{backend}/{label}"] = _Counters()
            for c in (self.total, b, k):
                c.requests += 1
                c.statuses[status] = c.statuses.get(status, 0) + 1
                if field is not None:
                    setattr(c, field, getattr(c, field) + 1)

    # -- handling ----------------------------------------------------------------------
    async def __call__(self, req: ServerRequest) -> ServerResponse:
        path = req.path
        if path.startswith("/_sim/"):
            return self._control(req)
        name, _, rest = path[1:].partition("/")
        server = self.servers.get(name)
        if server is None:
            return ServerResponse.json({"error": {"message": f"no protocol mounted at /{name}; "
                                                  f"mounted: {sorted(self.servers)}"}}, 404)
        sub = ServerRequest(method=req.method, path="/" + rest, query=req.query,
                            headers=req.headers, body=req.body)
        now = time.monotonic()
        elapsed = now - self.started
        cfg = self.config
        try:
            label = key_label(server.key_of(sub))
        except Exception:
            label = "anonymous"
        scope = (name, label)
        if self.in_outage(elapsed):
            with self.lock:
                if len(self.outage_times) < MAX_OUTAGE_TIMES:
                    self.outage_times.append(round(elapsed, 6))
            resp = server.error(sub, 503, "The service is temporarily unavailable (simulated outage).")
            self._count(name, label, "outage_calls", resp.status)
            return resp
        quota = self._quota(scope, now)
        info = None
        if quota is not None:
            ok, info = quota.admit(self._cost(sub) if cfg.tokens_per_minute else 1.0, now)
            if not ok:
                resp = server.rate_limited(sub, info)
                self._count(name, label, "rate_limited", resp.status)
                return resp
        rng = self._rng(scope)
        delay = cfg.latency + (rng.uniform(0.0, cfg.jitter) if cfg.jitter else 0.0)
        inject = cfg.error_rate > 0 and rng.random() < cfg.error_rate
        if delay > 0:
            await asyncio.sleep(delay)
        if inject:
            resp = server.error(sub, 500, "The server had an error while processing your request "
                                          "(simulated).")
            self._count(name, label, "errors_injected", resp.status)
            return resp
        try:
            resp = server(sub)
        except Exception as exc:
            with self.lock:
                self.server_errors += 1
            resp = ServerResponse.text(f"protocol server error: {type(exc).__name__}: {exc}", 500)
        # The simulator is the authority on limits: a protocol's own default quota
        # headers would make clients pace themselves to a quota nobody configured.
        names = self._rl_names.get(name)
        if names and any(h.lower() in names for h in resp.headers):
            resp.headers = {h: v for h, v in resp.headers.items() if h.lower() not in names}
        if info is not None and resp.status < 400:
            resp.headers.update(server.rate_limit_headers(info))
        self._count(name, label, "ok" if resp.status < 400 else None, resp.status)
        return resp

    def _control(self, req: ServerRequest) -> ServerResponse:
        if req.path == "/_sim/stats" and req.method == "GET":
            return ServerResponse.json(self.stats())
        if req.path == "/_sim/reset" and req.method == "POST":
            self.reset_stats()
            return ServerResponse.json({"reset": True})
        if req.path == "/_sim/health":
            return ServerResponse.json({"ok": True, "mounted": sorted(self.servers)})
        return ServerResponse.json({"error": {"message": f"no control route {req.path}"}}, 404)

    # -- counters ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "uptime": round(time.monotonic() - self.started, 6),
                # CPU time of the whole process (meaningful when the simulator runs alone
                # in it, as ``ipfs-accelerate sim`` does): requests / cpu_seconds is the
                # capacity of one core, whatever else the machine is doing.
                "process_cpu_seconds": round(time.process_time(), 3),
                "mounted": sorted(self.servers),
                **self.total.to_dict(),
                "protocol_server_errors": self.server_errors,
                "outage_times": list(self.outage_times),
                "backends": {n: c.to_dict() for n, c in sorted(self.per_backend.items())},
                "keys": {n: c.to_dict() for n, c in sorted(self.per_key.items())},
                "config": {"rps": self.config.rps, "burst": self.config.burst,
                           "tokens_per_minute": self.config.tokens_per_minute,
                           "header_style": self.config.header_style,
                           "latency": self.config.latency, "jitter": self.config.jitter,
                           "error_rate": self.config.error_rate,
                           "outages": [list(o) for o in self.config.outages],
                           "seed": self.config.seed},
            }

    def reset_stats(self) -> None:
        with self.lock:
            self._reset_counters()


class Simulator:
    """Runs the simulator's event loop in its own thread.

    >>> with Simulator(SimConfig(rps=50)) as sim:
    ...     base_url = sim.base_url("openai") + "/v1"
    """

    def __init__(self, config: SimConfig | None = None, *, servers: Mapping[str, ProtocolServer] | None = None,
                 plugin_manager: Any = None, **changes: Any) -> None:
        config = config or SimConfig()
        if changes:
            import attrs

            config = attrs.evolve(config, **changes)
        self.config = config
        if servers is None:
            servers = load_protocol_servers(config.seed, config.backends, plugin_manager,
                                            config.models)
        self.app = SimApp(config, servers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.host = config.host
        self.port = config.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, backend: str) -> str:
        """Where a backend's protocol is mounted (append the protocol's own path prefix)."""
        return f"{self.url}/{backend}"

    @property
    def mounted(self) -> list[str]:
        return sorted(self.app.servers)

    def start(self) -> Simulator:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    start_server(self.app, self.config.host, self.config.port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self.app.started = time.monotonic()
            ready.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=run, name="ipfs-accelerate-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    close = stop

    def stats(self) -> dict[str, Any]:
        """What the simulator did: requests, 429s sent, errors injected, outage calls (with
        their times in seconds since start), per backend and per key (``key-<fingerprint>``)."""
        return self.app.stats()

    def reset_stats(self) -> None:
        self.app.reset_stats()

    def elapsed(self) -> float:
        return time.monotonic() - self.app.started

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def serve_forever(config: SimConfig, *, servers: Mapping[str, ProtocolServer] | None = None,
                        ready: Any = None) -> None:
    """Run the simulator in the current event loop until cancelled (the CLI's ``sim``)."""
    if servers is None:
        servers = load_protocol_servers(config.seed, config.backends, models=config.models)
    app = SimApp(config, servers)
    server = await start_server(app, config.host, config.port)
    app.started = time.monotonic()
    if ready is not None:
        ready(server.sockets[0].getsockname()[1], app)
    async with server:
        await server.serve_forever()
