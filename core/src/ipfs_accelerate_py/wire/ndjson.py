"""Newline-delimited JSON streams (Ollama, TGI-style progress)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator


class MalformedLine(ValueError):
    """A stream line that is not JSON."""


def iter_ndjson_lines(lines: Iterable[str | bytes]) -> Iterator[Any]:
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedLine(f"malformed NDJSON line: {line[:200]!r}") from exc


def iter_ndjson(response: Any) -> Iterator[Any]:
    """Parse JSON objects, one per line, from a streaming ``requests.Response``."""
    return iter_ndjson_lines(_lines(response))


def format_ndjson(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")


def _lines(response: Any) -> Iterable[bytes]:
    # The transport's reader bounds each line (and the attempt's time); a response that
    # did not come through it (a caller's own transport) is read by requests' splitter.
    if hasattr(response, "max_line"):
        from ..http import iter_bounded_lines

        return iter_bounded_lines(response)
    return response.iter_lines(chunk_size=None)
