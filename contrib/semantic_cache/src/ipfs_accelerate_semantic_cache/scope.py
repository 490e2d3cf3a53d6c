"""What a semantic lookup compares, and within what.

The *prompt* is the text of the last user turn (chat: the last message, when its
content is text; completions: ``prompt``).  The *scope* is everything else, exactly:
the exact cache's key over the payload with that text replaced by a placeholder, plus
the namespace.  So backend, model, system prompt, earlier turns, tools, sampling settings
(temperature, seed, max_tokens...) and the namespace must all be equal for two requests
to be compared at all: a cached answer never crosses models or settings.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from ipfs_accelerate_py.caching.keys import CHAT_OPERATIONS, Uncacheable, cache_key

PLACEHOLDER = "\x00<semantic prompt>\x00"


def split_prompt(operation: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """(the payload with the prompt replaced by a placeholder, the prompt), or None when
    the request has no single text prompt to compare."""
    if operation not in CHAT_OPERATIONS:
        return None
    rest = dict(payload)
    messages = payload.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        if not isinstance(last, Mapping) or last.get("role") != "user":
            return None
        text = last.get("content")
        if not isinstance(text, str) or not text.strip():
            return None
        rest["messages"] = [*messages[:-1], {**last, "content": PLACEHOLDER}]
        return rest, text
    prompt = payload.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        rest["prompt"] = PLACEHOLDER
        return rest, prompt
    return None


def scope_of(endpoint: str, operation: str, namespace: str,
             payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(scope id, prompt) of a request, or None."""
    split = split_prompt(operation, payload)
    if split is None:
        return None
    rest, text = split
    try:
        key = cache_key(endpoint, operation, rest)
    except Uncacheable:
        return None
    scope = hashlib.sha256(f"{namespace}\n{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return scope, text
