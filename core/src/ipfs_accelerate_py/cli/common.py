"""What every command shares: the error type, exit statuses, the redactor, option types
that refuse impossible numbers, and the pipeline options."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

from ..jobs import JobError, redact_output

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(JobError):
    """A user-facing error: printed as one line, exit status 2."""


#: Results and output lines pass the core redactor's known secrets (every key loaded).
REDACT = redact_output


def err(msg: str) -> None:
    """One line on stderr through the core redactor (known secrets and key shapes)."""
    from ..redaction import redact

    sys.stderr.write(redact(msg) + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- option types
def _number(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
positive_float = _number(float, lambda v: v > 0, "a number > 0")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number within [0, 1]")
port_number = _number(int, lambda v: 0 <= v <= 65535, "a port number within [0, 65535]")


def add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys-file", metavar="PATH",
                   help="API keys: one per line, or JSON {\"backend\": [\"key\", ...]}; "
                        "default: the backend's environment variables (e.g. OPENAI_API_KEY, "
                        "OPENAI_API_KEY_1, ...)")


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=positive_int, default=8, metavar="N",
                   help="requests in flight at once (default: %(default)s)")
    p.add_argument("--per-key-concurrency", type=positive_int, metavar="N",
                   help="requests in flight per key (default: the backend's, 8)")
    p.add_argument("--rpm", type=positive_float, metavar="N", help="requests per minute per key")
    p.add_argument("--tpm", type=positive_float, metavar="N", help="tokens per minute per key")
    p.add_argument("--strategy", help="key-selection strategy (see `ipfs-accelerate plugins`)")
    p.add_argument("--deadline", type=positive_float, metavar="SECONDS",
                   help="give up on a request after this long, retries included (default 600)")
    p.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                   help="read timeout of one attempt")


# --------------------------------------------------------------------------- backends
def plugin_manager() -> Any:
    from ..plugins import get_plugin_manager

    return get_plugin_manager()


def protocol_path(cls: Any) -> str:
    """The path part of a backend's default base URL (``/v1`` for OpenAI): appended to a
    simulator mount point to get a working base URL."""
    return urlsplit(cls.default_base_url or "").path.rstrip("/")


def parse_base_urls(values: Sequence[str] | None, backends: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    names = list(backends)
    for v in values or ():
        name, sep, url = v.partition("=")
        if sep and "://" not in name:
            out[name] = url
        elif len(names) == 1:
            out[names[0]] = v
        else:
            raise CliError(f"--base-url {v!r}: with several backends write NAME=URL")
    return out


def start_watchers(command: str, args: Any, client: Any, progress: Any) -> list[Any]:
    """Whatever plugins start for a running command's client (a live page...), through
    the ``accelerate_cli_client_ready`` hook; :func:`stop_watchers` closes them."""
    from ..plugins import get_plugin_manager

    found = get_plugin_manager().hooks.accelerate_cli_client_ready(
        command=command, args=args, client=client, progress=progress)
    return [w for w in found if w is not None]


def stop_watchers(watchers: Iterable[Any]) -> None:
    for watcher in watchers:
        try:
            watcher.close()
        except Exception:  # a watcher that fails to stop must not hide the command's result
            pass

