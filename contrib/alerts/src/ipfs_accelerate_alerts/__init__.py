"""In-process alerting for ipfs-accelerate (an observer with rules and notifiers)."""

from __future__ import annotations

from .manager import AlertManager
from .notifiers import (Alert, CommandNotifier, LogNotifier, WebhookNotifier, notifier_hookimpl,
                        notifier_hookspec)
from .rules import (BreakerOpen, BudgetThreshold, ErrorRate, KeyRejected, QueueAge, RateLimitShare,
                    default_rules)

__all__ = ["AlertManager", "Alert", "LogNotifier", "WebhookNotifier", "CommandNotifier",
           "notifier_hookimpl", "notifier_hookspec", "BreakerOpen", "KeyRejected",
           "RateLimitShare", "ErrorRate", "QueueAge", "BudgetThreshold", "default_rules"]
