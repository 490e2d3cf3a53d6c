"""The per-deployment secret that keys the public ids of API keys.

A key's public id (``key-1a2b3c4d``) is published in stats, Prometheus labels and Redis key
names.  An unsalted hash would let anyone holding a candidate key confirm it, so the id is
an HMAC under a secret of the deployment, taken from (first found):

1. :func:`set_key_id_secret` (a library that manages its own secrets);
2. the ``IPFS_ACCELERATE_KEY_ID_SECRET`` environment variable -- set the same value on every
   host that shares a Redis state store so their processes agree on every key's id;
3. a random secret created once per user in ``$XDG_CONFIG_HOME/ipfs-accelerate/key-id-secret``
   (``~/.config/...``, mode 0600; ``IPFS_ACCELERATE_KEY_ID_FILE`` names another file), so the
   CLI and library processes of one user agree without configuration;
4. when that file can be neither read nor created, a random secret for this process only
   (a warning is logged: ids then differ between processes).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

ENV_SECRET = "IPFS_ACCELERATE_KEY_ID_SECRET"
ENV_FILE = "IPFS_ACCELERATE_KEY_ID_FILE"

log = logging.getLogger("ipfs_accelerate")
_lock = threading.Lock()
_explicit: bytes | None = None
_cached: tuple[str | None, str | None, bytes] | None = None  # (env secret, env file, secret)


def set_key_id_secret(secret: str | bytes | None) -> None:
    """Use ``secret`` for every key id from now on (``None``: back to the environment).
    Set it before any client is built: ids computed earlier keep the old secret."""
    global _explicit
    if secret is not None and not secret:
        from .errors import ConfigError

        raise ConfigError("key_id_secret", "must not be empty")
    _explicit = secret.encode("utf-8") if isinstance(secret, str) else secret


def default_file() -> Path:
    configured = os.environ.get(ENV_FILE)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ipfs-accelerate" / "key-id-secret"


def _from_file(path: Path) -> bytes | None:
    try:
        text = path.read_text(encoding="ascii").strip()
        if text:
            return text.encode("ascii")
    except (OSError, UnicodeDecodeError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: read theirs
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text.encode("ascii") if text else None
    except OSError:
        return None
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value.encode("ascii")


def key_id_secret() -> bytes:
    """The secret key ids are computed under (see the module's docstring for the order)."""
    global _cached
    if _explicit is not None:
        return _explicit
    env_secret, env_file = os.environ.get(ENV_SECRET) or None, os.environ.get(ENV_FILE) or None
    cached = _cached
    if cached is not None and cached[0] == env_secret and cached[1] == env_file:
        return cached[2]
    with _lock:
        if env_secret:
            value = env_secret.encode("utf-8")
        else:
            path = default_file()
            found = _from_file(path)
            if found is None:
                log.warning("ipfs-accelerate: cannot read or create the key id secret %s; "
                            "key ids are random for this process (set %s to share them)",
                            path, ENV_SECRET)
                found = secrets.token_hex(32).encode("ascii")
            value = found
        _cached = (env_secret, env_file, value)
        return value


__all__ = ["ENV_FILE", "ENV_SECRET", "default_file", "key_id_secret", "set_key_id_secret"]
