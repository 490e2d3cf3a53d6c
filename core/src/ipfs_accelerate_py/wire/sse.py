"""Server-sent events: parsing (client side) and formatting (server side)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import attrs


@attrs.frozen
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse_lines(lines: Iterable[str | bytes]) -> Iterator[SSEEvent]:
    """Parse SSE framing from an iterable of lines (without or with line endings).

    Follows the WHATWG rules that matter for API streams: ``data:`` lines of one event are
    joined with newlines, a blank line dispatches the event, ``:`` lines are comments.  An
    event still pending when the input ends is *not* dispatched (the spec drops it), so a
    stream cut mid-event is detectable by its missing terminator.
    """
    data: list[str] = []
    event: str | None = None
    ev_id: str | None = None
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent("\n".join(data), event, ev_id)
            data, event = [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            ev_id = value


def iter_sse(response: Any) -> Iterator[SSEEvent]:
    """Parse SSE events from a streaming ``requests.Response``."""
    return iter_sse_lines(_lines(response))


def format_sse(data: Any, event: str | None = None) -> bytes:
    """One SSE event as bytes; ``data`` that is not a str is JSON-encoded."""
    if not isinstance(data, str):
        data = json.dumps(data, separators=(",", ":"))
    out = []
    if event:
        out.append(f"event: {event}\n")
    for line in data.split("\n"):
        out.append(f"data: {line}\n")
    out.append("\n")
    return "".join(out).encode("utf-8")


def _lines(response: Any) -> Iterable[bytes]:
    # The transport's reader bounds each line (and the attempt's time); a response that
    # did not come through it (a caller's own transport) is read by requests' splitter.
    if hasattr(response, "max_line"):
        from ..http import iter_bounded_lines

        return iter_bounded_lines(response)
    return response.iter_lines(chunk_size=None)
