"""The transport's line splitter: every split of the input gives the same lines, and a
line over the bound raises instead of growing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipfs_accelerate_py.errors import ResponseTooLarge
from ipfs_accelerate_py.http import iter_bounded_lines


class Pieces:
    """What the splitter reads: a response's ``iter_content`` pieces and its bound."""

    status_code = 200

    def __init__(self, pieces: list[bytes], max_line: int | None) -> None:
        self.pieces = pieces
        self.max_line = max_line
        self.closed = False
        self.raw = None

    def iter_content(self, chunk_size: int) -> list[bytes]:
        return self.pieces

    def close(self) -> None:
        self.closed = True


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


@given(st.lists(line, max_size=20), st.lists(st.integers(0, 10_000), max_size=30),
       st.booleans())
def test_any_split_gives_the_same_lines(lines, cuts, crlf):
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(x + end for x in lines)
    assert list(iter_bounded_lines(Pieces(_split(data, cuts), 1000))) == lines


def test_a_last_line_without_its_newline_is_kept():
    assert list(iter_bounded_lines(Pieces([b"a\nb", b"c"], 10))) == [b"a", b"bc"]


def test_a_line_over_the_bound_raises_and_closes():
    resp = Pieces([b"data: " + b"x" * 600, b"y" * 600], 1000)
    with pytest.raises(ResponseTooLarge) as info:
        list(iter_bounded_lines(resp))
    assert info.value.limit == 1000 and resp.closed
    assert not info.value.should_retry
