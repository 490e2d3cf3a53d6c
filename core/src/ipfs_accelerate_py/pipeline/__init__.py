"""The pipeline in named stages, apart from the threads (or event loop) that drive it.

- :mod:`.admission`: validate, give the deadline, backpressure, queue.
- :mod:`.dispatch`: ready endpoints, key choice, batch assembly; the one place that
  reserves capacity (a :class:`~.jobs.Dispatch`).  The batch window is its policy.
- :mod:`.attempt`: build, send, classify, parse; returns an :class:`~.attempt.AttemptOutcome`.
- :mod:`.settlement`: the one place that gives capacity back and books the outcome with
  the limiter and breaker; finishes, requeues or reroutes jobs; tells the monitors.

:class:`Pipeline` wires them over one :class:`~.scheduling.Scheduling` state and an
injected clock.  ``docs/concepts.md`` shows where each hook is called.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..backend import Backend
from ..config import BackendConfig, ClientConfig
from ..costs import make_tracker
from ..errors import ConfigError, PluginError
from ..events import Outcome, RequestStarted
from ..keys import ApiKey
from ..results import Result
from ..retry import RetryBudget
from ..selection import KeyCandidate
from .admission import Admission
from .attempt import AttemptOutcome, Kind, run_attempt
from .dispatch import BatchWindow, Dispatcher
from .jobs import BackendState, Dispatch, Job
from .monitor import Monitor
from .scheduling import Scheduling
from .settlement import Settlement


class Pipeline:
    """One client's stages and their shared state.  Runs no threads and never waits."""

    def __init__(self, backends: Any, config: ClientConfig, pm: Any, clock: Callable[[], float],
                 seed: int | None, transport: Any, store: Any,
                 observers: Sequence[Any] = ()) -> None:
        hooks = pm.hooks
        self.pm = pm
        self.monitor = Monitor(pm, tuple(observers))
        self.s = s = Scheduling(config, hooks, clock, seed, self.monitor)
        self.store = store
        self.transport = transport
        s.queue = hooks.accelerate_make_queue(config=config)
        self.settlement = Settlement(s)
        self.dispatch = Dispatcher(s)
        self.admission = Admission(s, BatchWindow())
        for item in as_backend_configs(backends):
            self._add_backend(item)
        if not s.backends:
            raise ConfigError("backends", "at least one backend is required")
        s.costs = make_tracker(config, pm, [b.backend for b in s.backends.values()], store,
                               self._budget_event, clock)
        self.cache: Any = None  # the response cache stage, made on first need
        #: Set by the driver: ``submit(Request) -> Future`` through this pipeline.
        self.submit: Callable[[Any], Any] | None = None
        if config.cache is not None or any(b.config.cache for b in s.backends.values()):
            self.cache_stage()

    def _budget_event(self, event: Any) -> None:
        if self.monitor.wants("accelerate_on_budget"):
            self.monitor.emit("accelerate_on_budget", event)

    # ------------------------------------------------------------------ the cache stage
    def cache_stage(self) -> Any:
        """The client's cache stage (``caching.CacheStage``), made on first need: when
        the config names a cache, or a backend or request asks for one (then in memory)."""
        if self.cache is None:
            from ..caching import CacheConfig, resolve_cache

            with self.s.lock:
                if self.cache is None:
                    cfg = self.s.config.cache or CacheConfig(enabled=False)
                    stage = resolve_cache(cfg, self.pm)
                    stage.submit = lambda req: self.submit(req)  # type: ignore[misc]
                    self.cache = self.settlement.cache = stage
        return self.cache

    def serve_from_cache(self, job: Job) -> bool:
        """Before the queue: resolve ``job`` from the cache if it may and can (no key, no
        limiter token, no budget).  True when it was served; a miss leaves the job the
        key to write at settlement."""
        cache = self.cache
        if cache is None:
            if job.request.cache not in (True, "refresh"):
                return False
            cache = self.cache_stage()
        if self.s.closing:
            return False  # admission refuses it with ClientClosedError
        hit = cache.lookup(job)
        if hit is None:
            return False
        job.cost_units = 0  # booked as priced at exactly zero, not as "no price"
        job.future.set_result(hit)
        self.settlement.finished(job, Outcome.SUCCESS, None, 1,
                                 result=hit if isinstance(hit, Result) else None)
        return True

    # ------------------------------------------------------------------ set-up
    def _add_backend(self, item: BackendConfig | Backend) -> None:
        s = self.s
        backend = item if isinstance(item, Backend) else self.pm.backend_class(item.name)(item)
        cfg = backend.config
        name = backend.name
        if not s.config.send_request_id:
            backend.send_request_id = False
        if name in s.backends:
            raise ConfigError("backends", f"backend {name!r} configured twice")
        keys: Sequence[ApiKey] = cfg.keys or tuple(type(backend).keys_from())
        if not keys:
            if backend.key_required:
                hint = " or set " + " / ".join(backend.env_keys) if backend.env_keys else ""
                raise ConfigError("keys", f"backend {name!r} needs an API key: pass keys=[...]{hint}")
            keys = (ApiKey(secret=None, name="anonymous"),)
        now = s.clock()
        candidates: list[KeyCandidate] = []
        seen: set[str] = set()
        needs_tokens = False
        for i, key in enumerate(keys):
            if key.key_id in seen:
                raise ConfigError("keys", f"backend {name!r} has two keys named {key.key_id!r}")
            seen.add(key.key_id)
            tpm = key.tokens_per_minute or cfg.tokens_per_minute
            needs_tokens = needs_tokens or tpm is not None
            limiter = self.store.limiter(f"{name}/{key.key_id}",
                                         key.requests_per_minute or cfg.requests_per_minute,
                                         tpm, key.burst or cfg.burst, now)
            candidates.append(KeyCandidate(key, i, key.max_concurrent or cfg.max_concurrent_per_key,
                                           limiter))
        group = backend.endpoint_id()
        breaker = self.store.breaker(group, s.config.breaker, self.settlement.breaker_changed)
        rp = s.config.retry
        budget = RetryBudget(rp.budget_ratio, rp.budget_min_per_second, rp.budget_window, now)
        strategy_name, strategy = self._strategy()
        state = BackendState(backend, candidates, strategy, breaker, budget, needs_tokens,
                             strategy_name)
        s.backends[name] = state
        s.groups[state.group] = state

    def _strategy(self) -> tuple[str, Any]:
        name = self.s.config.strategy
        if name is None:
            name = "least-loaded" if "least-loaded" in self.pm.strategies() else "first-available"
        factory = self.pm.strategy_factory(name)
        try:
            return name, factory()
        except Exception as exc:
            raise PluginError(name, "strategy factory", exc) from exc

    # ------------------------------------------------------------------ one attempt
    def run(self, d: Dispatch) -> None:
        """Send a dispatch and settle it: what a driver does with what it picked."""
        if self.settlement.return_if_breaker_open(d):
            return
        s = self.s
        key_id = d.key.key_id
        if s.costs.budgets:
            refused = s.costs.reserve(d.jobs, key_id)
            if refused:
                self.settlement.budget_refused(d, refused)
                return
        for j in d.jobs:
            j.attempts += 1
            j.key_id = key_id
        if s.monitor.wants("accelerate_on_started"):
            now = s.clock()
            for j in d.jobs:
                s.monitor.emit("accelerate_on_started", RequestStarted(
                    j.request.request_id, d.bstate.name, j.request.operation, key_id,
                    j.attempts, now - j.submitted, now, tags=j.request.tags))
        self.settlement.settle(d, run_attempt(d, self.transport, s.clock))


def as_backend_configs(backends: Any) -> list[BackendConfig | Backend]:
    if isinstance(backends, (str, BackendConfig, Backend)):
        backends = [backends]
    if isinstance(backends, Mapping):
        out: list[BackendConfig | Backend] = []
        for name, cfg in backends.items():
            if isinstance(cfg, (BackendConfig, Backend)):
                out.append(cfg)
            elif isinstance(cfg, Mapping):
                out.append(BackendConfig(name=name, **cfg))
            else:
                raise ConfigError("backends", f"{name!r}: expected a BackendConfig or a mapping")
        return out
    out = []
    for b in backends:
        if isinstance(b, str):
            out.append(BackendConfig(name=b))
        elif isinstance(b, (BackendConfig, Backend)):
            out.append(b)
        else:
            raise ConfigError("backends", f"expected a name, BackendConfig or Backend, got {type(b).__name__}")
    return out


__all__ = ["AttemptOutcome", "Dispatch", "Job", "Kind", "Pipeline", "Scheduling"]
