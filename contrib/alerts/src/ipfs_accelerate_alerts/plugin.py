"""The entry point: makes the ``alerts`` observer when a client's configuration names it,
e.g. ``ClientConfig(observers=(("alerts", {"webhook": URL, "error_rate": 0.2}),))``.
Installed, it observes nothing by itself.

Options: ``webhook`` (URL), ``command`` (argument list), ``log`` (default True),
``breaker_min_open``, ``rate_limited_share``, ``error_rate``, ``window``,
``queue_age``, ``interval``, ``quiet``.
"""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


def make_manager(options: Any = None) -> Any:
    from .manager import AlertManager
    from .notifiers import CommandNotifier, LogNotifier, WebhookNotifier
    from .rules import BreakerOpen, ErrorRate, KeyRejected, QueueAge, RateLimitShare

    o = dict(options or {})
    window = float(o.get("window", 60.0))
    rules = [BreakerOpen(min_open=float(o.get("breaker_min_open", 0.0))), KeyRejected(),
             RateLimitShare(threshold=float(o.get("rate_limited_share", 0.25)), window=window),
             ErrorRate(threshold=float(o.get("error_rate", 0.1)), window=window),
             QueueAge(max_age=float(o.get("queue_age", 60.0)))]
    notifiers: list[Any] = [LogNotifier()] if o.get("log", True) else []
    if o.get("webhook"):
        notifiers.append(WebhookNotifier(str(o["webhook"])))
    if o.get("command"):
        notifiers.append(CommandNotifier(list(o["command"])))
    return AlertManager(rules, notifiers, interval=float(o.get("interval", 1.0)),
                        quiet=float(o.get("quiet", 5.0)))


@hookimpl
def accelerate_make_observer(name: str, options: Any, config: Any) -> Any:
    return make_manager(options) if name == "alerts" else None
