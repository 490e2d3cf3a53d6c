"""Anthropic's usage object as a :class:`~ipfs_accelerate_py.results.Usage`."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py.results import Usage


def anthropic_usage(input_tokens: Any, output_tokens: Any, usage: Any) -> Usage:
    """Anthropic's ``input_tokens`` leave out the prompt-cache reads and writes
    (``cache_read_input_tokens``, ``cache_creation_input_tokens``); Usage counts them in
    ``prompt_tokens`` (OpenAI's convention) and names them apart."""
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(input_tokens) + read + write
    return Usage.of(prompt, _int(output_tokens), cached=read, cache_write=write)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
