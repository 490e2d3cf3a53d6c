"""One check for every operation that sends several inputs: the answer must hold exactly
one item per input (and, where the protocol numbers the items, each index once), else a
:class:`~ipfs_accelerate_py.errors.CountMismatch` -- never a silently short or misassigned
result, never a retry."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeVar

from ..errors import CountMismatch, ProviderError

T = TypeVar("T")

#: ``make(cls, message, code)`` -> error; a backend's ``error_factory(response)``.
ErrorFactory = Callable[..., ProviderError]


def _plain(cls: type[ProviderError], message: str, code: str | None = None) -> ProviderError:
    return cls(message, code=code)


def _mismatch(make_error: ErrorFactory, message: str, expected: int,
              received: int) -> CountMismatch:
    err = make_error(CountMismatch, message, "count_mismatch")
    if not isinstance(err, CountMismatch):  # a factory that ignores cls: keep the type
        err = CountMismatch(message, backend=getattr(err, "backend", None))
    err.expected, err.received = expected, received
    return err


def check_count(what: str, expected: int, items: Any,
                make_error: ErrorFactory = _plain) -> list[Any]:
    """``items`` as a list of exactly ``expected`` elements, else ``CountMismatch``.

    ``what`` names the operation in the message ("hf_tei embed")."""
    if not isinstance(items, list):
        raise _mismatch(make_error, f"{what}: expected {expected} results for {expected} "
                        f"inputs, got {type(items).__name__}", expected, 0)
    if len(items) != expected:
        raise _mismatch(make_error, f"{what}: expected {expected} results for {expected} "
                        f"inputs, received {len(items)}", expected, len(items))
    return items


def check_rows(what: str, expected: int, received: Any,
               make_error: ErrorFactory = _plain) -> None:
    """A batch dimension (a tensor's ``shape[0]``) must equal the rows sent."""
    if received != expected:
        raise _mismatch(make_error, f"{what}: expected {expected} rows for {expected} inputs, "
                        f"received {received!r}", expected,
                        received if isinstance(received, int) else 0)


def order_by_index(what: str, expected: int, items: Any,
                   index: Callable[[Any], Any] = lambda it: it.get("index")
                   if isinstance(it, Mapping) else None,
                   make_error: ErrorFactory = _plain) -> list[Any]:
    """Items numbered by the protocol (OpenAI's ``index``, TEI rerank's ``index``) put in
    input order; the indices must be exactly ``0 .. expected-1``, each once."""
    check_count(what, expected, items, make_error)
    slots: list[Any] = [None] * expected
    seen: set[int] = set()
    for item in items:
        i = index(item)
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < expected or i in seen:
            raise _mismatch(make_error, f"{what}: result index {i!r} does not match one of "
                            f"the {expected} inputs (each index 0..{expected - 1} once)",
                            expected, len(items))
        seen.add(i)
        slots[i] = item
    return slots


def check_ranking(what: str, n_items: int, top_n: Any, ranks: Any,
                  index: Callable[[Any], Any] = lambda it: it.get("index")
                  if isinstance(it, Mapping) else None,
                  make_error: ErrorFactory = _plain) -> list[Any]:
    """A rerank answer: ``min(top_n, n_items)`` ranks (all items without a positive
    ``top_n``), best first, each pointing at a different item sent."""
    limit = top_n if isinstance(top_n, int) and not isinstance(top_n, bool) and top_n > 0 else n_items
    expected = min(limit, n_items)
    check_count(what, expected, ranks, make_error)
    seen: set[int] = set()
    for rank in ranks:
        i = index(rank)
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n_items or i in seen:
            raise _mismatch(make_error, f"{what}: rank index {i!r} does not match one of the "
                            f"{n_items} items sent (each at most once)", expected, len(ranks))
        seen.add(i)
    return ranks


def check_batch(what: str, requests: Sequence[Any], items: Any,
                make_error: ErrorFactory = _plain) -> list[Any]:
    """A coalesced call's answer, one item per queued request (``split_batch``)."""
    return check_count(f"{what} batch", len(requests), items, make_error)


__all__ = ["check_batch", "check_count", "check_ranking", "check_rows", "order_by_index"]
