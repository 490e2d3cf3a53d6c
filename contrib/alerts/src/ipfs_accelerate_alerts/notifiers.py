"""The alert, the notifier hook, and three notifiers: a log line, a webhook, a command.

A notifier is any object implementing ``accelerate_alert(alert)`` marked with
:data:`notifier_hookimpl`; the manager calls every registered one on its own delivery
thread, so a slow webhook never holds up the pipeline, and one failing notifier does not
stop the others.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from typing import Any, Sequence
from urllib.parse import urlsplit

import attrs
import pluggy

PROJECT = "ipfs_accelerate_alerts"
notifier_hookspec = pluggy.HookspecMarker(PROJECT)
notifier_hookimpl = pluggy.HookimplMarker(PROJECT)

log = logging.getLogger("ipfs_accelerate.alerts")


@attrs.frozen
class Alert:
    """One incident starting (``firing``) or ending (``resolved``)."""

    rule: str
    subject: str  # the endpoint, "backend/key_id", "queue" or "budget"
    state: str  # "firing" | "resolved"
    severity: str
    message: str
    value: float | None = None
    time: float = attrs.field(factory=time.time)  # Unix time

    def text(self) -> str:
        """One human line, as a chat message or a log line."""
        tag = "FIRING" if self.state == "firing" else "RESOLVED"
        what = self.message if self.state == "firing" else "recovered"
        return f"[{tag}] ipfs-accelerate {self.rule} ({self.severity}) {self.subject}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class NotifierSpec:
    """The notifier hook."""

    @notifier_hookspec
    def accelerate_alert(self, alert: Alert) -> None:
        """Deliver ``alert`` (firing or resolved).  Called on the alert manager's delivery
        thread; may block up to its own timeout; an exception is logged and ignored."""


class LogNotifier:
    """A warning line per firing alert, an info line per recovery."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    @notifier_hookimpl
    def accelerate_alert(self, alert: Alert) -> None:
        level = logging.WARNING if alert.state == "firing" else logging.INFO
        self.logger.log(level, "%s", alert.text())


class WebhookNotifier:
    """POSTs ``{"text": "..."}``, the body Slack-style incoming webhooks take (Slack,
    Mattermost, Rocket.Chat, Zulip's Slack-compatible endpoint); ``structured=True`` adds
    the alert's fields under ``"alert"`` for receivers of your own.  The URL often holds a
    token: it is never logged, only its host."""

    def __init__(self, url: str, *, timeout: float = 5.0, structured: bool = False,
                 headers: dict[str, str] | None = None, session: Any = None) -> None:
        import requests  # here, not at import: the entry point must import cheaply

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("webhook url: expected an http(s) URL")
        if not timeout > 0:
            raise ValueError(f"webhook timeout: must be > 0, got {timeout!r}")
        self._url = url
        self.host = parts.hostname or ""
        self.timeout = timeout
        self.structured = structured
        self.headers = dict(headers or {})
        self._session = session or requests.Session()
        self._errors = requests.RequestException

    def body(self, alert: Alert) -> dict[str, Any]:
        body: dict[str, Any] = {"text": alert.text()}
        if self.structured:
            body["alert"] = alert.to_dict()
        return body

    @notifier_hookimpl
    def accelerate_alert(self, alert: Alert) -> None:
        try:
            resp = self._session.post(self._url, json=self.body(alert), headers=self.headers,
                                      timeout=self.timeout)
        except self._errors as exc:
            raise RuntimeError(f"webhook to {self.host} failed: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise RuntimeError(f"webhook to {self.host} answered HTTP {resp.status_code}")

    def __repr__(self) -> str:
        return f"<WebhookNotifier host={self.host!r}>"


class CommandNotifier:
    """Runs ``argv`` per alert with the alert as JSON on stdin and in ``ALERT_*``
    environment variables (rule, subject, state, severity, message)."""

    def __init__(self, argv: Sequence[str], *, timeout: float = 10.0) -> None:
        if isinstance(argv, str) or not argv:
            raise ValueError("command: expected a non-empty argument list, e.g. ['notify-send', 'x']")
        self.argv = list(argv)
        self.timeout = timeout

    @notifier_hookimpl
    def accelerate_alert(self, alert: Alert) -> None:
        env = dict(os.environ)
        env.update({"ALERT_RULE": alert.rule, "ALERT_SUBJECT": alert.subject,
                    "ALERT_STATE": alert.state, "ALERT_SEVERITY": alert.severity,
                    "ALERT_MESSAGE": alert.text()})
        try:
            proc = subprocess.run(self.argv, input=json.dumps(alert.to_dict()).encode(), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"alert command {self.argv[0]!r} still running after "
                               f"{self.timeout:g} s (killed)") from None
        if proc.returncode != 0:
            raise RuntimeError(f"alert command {self.argv[0]!r} exited {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace')[-200:].strip()}")
