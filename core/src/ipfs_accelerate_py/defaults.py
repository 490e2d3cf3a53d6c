"""The core's default hook implementations (registered last, so any plugin overrides)."""

from __future__ import annotations

from typing import Any, Sequence

from .hookspecs import hookimpl


@hookimpl(trylast=True)
def accelerate_make_queue(config: Any) -> Any:
    from .queue import PriorityRequestQueue

    return PriorityRequestQueue(maxsize=config.queue_size)


@hookimpl(trylast=True)
def accelerate_make_state_store(config: Any) -> Any:
    from .state import InMemoryStateStore

    return InMemoryStateStore()


@hookimpl(trylast=True)
def accelerate_make_breaker(endpoint: str, policy: Any, store: Any, on_transition: Any) -> Any:
    return store.breaker(endpoint, policy, on_transition)


@hookimpl(trylast=True)
def accelerate_select_key(request: Any, candidates: Sequence[Any], strategy: Any) -> Any:
    # ``strategy`` here is the resolved strategy object of the request's backend.
    return strategy.select(request, candidates)


@hookimpl(trylast=True)
def accelerate_backoff(request: Any, attempt: int, error: Any, policy: Any, now: float,
                       deadline: float | None, rng: Any) -> Any:
    from .retry import decide_retry

    return decide_retry(policy, attempt, error, now, deadline, rng)


@hookimpl
def accelerate_strategies() -> dict[str, Any]:
    from .selection import BUILTIN_STRATEGIES

    return dict(BUILTIN_STRATEGIES)
