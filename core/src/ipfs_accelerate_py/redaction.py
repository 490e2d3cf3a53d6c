"""The one redactor: every secret this process knows, plus patterns for key shapes.

Every :class:`~ipfs_accelerate_py.keys.Secret` registers its value here when it is made, so
error construction, events, log records and every writer (batch output, errors file,
journal, Redis values) can pass text through :func:`redact` and lose any key a provider
echoed back, whichever backend or entry point loaded it.  :func:`redact_url` strips the
user info and query string of a URL before it is shown or used as an id.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from typing import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MARK = "***"

#: Secrets shorter than this are not registered: replacing "ab" everywhere would mangle
#: text, and a key that short protects nothing anyway.
MIN_SECRET_LENGTH = 6

#: Shapes of credentials worth hiding even when this process never saw them: provider key
#: prefixes, bearer/basic tokens, ``key=...``-style query and JSON fields, URL user info.
_PATTERNS = [
    (re.compile(r"\b(?:sk|rk|pk)-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_\-]{10,}"), MARK),
    (re.compile(r"\b(?:gsk_|hf_|xai-|glpat-|ghp_|gho_|AIza)[A-Za-z0-9_\-]{16,}"), MARK),
    # A masked fragment a provider echoes ("Incorrect API key provided: sk-ab***yz").
    (re.compile(r"(?i)(api key provided:?\s*)[^\s,;]+"), r"\1" + MARK),
    (re.compile(r"\b(?:sk|gsk|pk|rk)[-_][A-Za-z0-9._\-]*\*+[A-Za-z0-9._\-]*"), MARK),
    (re.compile(r"\b(Basic\s+)[A-Za-z0-9+/]{8,}={0,2}"), r"\1" + MARK),
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + MARK),
    (re.compile(r"(?i)(\b(?:api[_-]?key|access[_-]?token|secret[_-]?key|client[_-]?secret|"
                r"password|passwd|x-api-key|x-goog-api-key|x-amz-security-token|authorization)"
                r"[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\s\"'&,;}]{4,}"), r"\1" + MARK),
    # Query-string credentials (``?key=...``, ``&sig=...``) of URLs in messages.
    (re.compile(r"(?i)([?&](?:key|api[_-]?key|token|access[_-]?token|sig|signature|"
                r"x-amz-signature|x-amz-credential|x-amz-security-token|password)=)[^&\s\"']+"),
     r"\1" + MARK),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s@:]*(?::[^/\s@]*)?@"), r"\1" + MARK + "@"),
]


class Redactor:
    """Replaces registered secrets (longest first) and key-shaped text with ``***``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH or secret in self._secrets:
            return
        with self._lock:
            if secret not in self._secrets:
                self._secrets = tuple(sorted((*self._secrets, secret), key=len, reverse=True))

    def add_all(self, secrets: Iterable[str | None]) -> None:
        for s in secrets:
            self.add(s)

    def known(self, text: str) -> str:
        """Only the registered secrets replaced: for results (a model's answer), where a
        pattern could change a legitimate word."""
        if not text:
            return text
        for s in self._secrets:  # a snapshot: add() swaps the tuple, never mutates it
            if s in text:
                text = text.replace(s, MARK)
        return text

    def __call__(self, text: str) -> str:
        text = self.known(text)
        if not text:
            return text
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text


#: The process-wide redactor every component uses.
REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with every known secret and key-shaped token replaced by ``***``."""
    return REDACTOR(text)


def redact_url(url: str) -> str:
    """``url`` without user info, query string or fragment (they carry credentials:
    ``https://user:pw@host/v1?key=...``); anything unparsable is redacted as text."""
    try:
        split = urlsplit(url)
        host = split.hostname or ""
        port = split.port
    except ValueError:
        return redact(url)
    if not split.scheme or not host:
        return redact(url)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((split.scheme, netloc, redact(split.path), "", ""))


def register_url_secrets(url: str | None) -> None:
    """Teach the redactor the password and query values of ``url`` (a base URL given with
    credentials), so they are hidden even where the URL appears re-encoded or in parts."""
    if not url:
        return
    try:
        split = urlsplit(url)
        password = split.password
    except ValueError:
        return
    REDACTOR.add(password)
    if split.username is not None or password is not None:  # as Basic auth sends it
        pair = f"{unquote(split.username or '')}:{unquote(password or '')}"
        REDACTOR.add(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    for pair in split.query.split("&"):
        REDACTOR.add(pair.partition("=")[2])


class RedactingFilter(logging.Filter):
    """A log filter that renders the record's message and redacts it (args included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


#: Loggers whose records may carry a URL or a provider's answer: ours and the HTTP stack's
#: (urllib3 logs every request line at DEBUG, query string included).
LOGGERS = ("ipfs_accelerate", "ipfs_accelerate.redis", "ipfs_accelerate_py", "urllib3",
           "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
           "urllib3.response", "urllib3.util.retry", "requests")

_FILTER = RedactingFilter()


def install_log_filter(names: Iterable[str] = LOGGERS) -> None:
    """Attach the redacting filter to each named logger (idempotent).  Logger filters see
    only records logged on that very logger, hence the explicit list."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# Installed on import: every module that can emit a record imports the errors, hence this.
install_log_filter()

__all__ = ["MARK", "REDACTOR", "RedactingFilter", "Redactor", "install_log_filter", "redact",
           "redact_url", "register_url_secrets"]
