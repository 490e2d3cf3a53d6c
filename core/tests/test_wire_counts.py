"""wire.counts: one item per input, each protocol index once, else CountMismatch."""

from __future__ import annotations

import pickle

import pytest

from ipfs_accelerate_py.errors import CountMismatch, TransientError
from ipfs_accelerate_py.retry import RetryPolicy, decide_retry
from ipfs_accelerate_py.wire.counts import check_batch, check_count, check_rows, order_by_index


def test_matching_count_passes_the_list_through() -> None:
    items = [[0.1], [0.2]]
    assert check_count("x embed", 2, items) is items


@pytest.mark.parametrize("items,received", [([[0.1]], 1), ([1, 2, 3], 3), ({"a": 1}, 0), (None, 0)])
def test_wrong_count_or_shape_raises_naming_both_counts(items, received) -> None:
    with pytest.raises(CountMismatch) as info:
        check_count("x embed", 2, items)
    err = info.value
    assert (err.expected, err.received) == (2, received)
    assert err.message.startswith("x embed: expected 2 results for 2 inputs")
    assert err.code == "count_mismatch" and err.should_retry is False
    assert isinstance(err, TransientError)  # a wrong answer from the server, for the breaker


def test_a_count_mismatch_is_never_retried() -> None:
    import random

    err = CountMismatch("short", expected=3, received=2)
    decision = decide_retry(RetryPolicy(max_attempts=5), 1, err, 0.0, None, random.Random(0))
    assert decision.retry is False


def test_the_error_factory_builds_the_error() -> None:
    seen = []

    def make(cls, message, code=None):
        seen.append((cls, code))
        return cls(message, code=code, backend="b", status=200)

    with pytest.raises(CountMismatch) as info:
        check_batch("b embeddings", ["r1", "r2", "r3"], [1], make)
    assert seen == [(CountMismatch, "count_mismatch")]
    assert info.value.backend == "b" and (info.value.expected, info.value.received) == (3, 1)
    assert "b embeddings batch: expected 3 results" in str(info.value)


def test_order_by_index_puts_items_in_input_order() -> None:
    items = [{"index": 2, "v": "c"}, {"index": 0, "v": "a"}, {"index": 1, "v": "b"}]
    assert [it["v"] for it in order_by_index("e", 3, items)] == ["a", "b", "c"]


@pytest.mark.parametrize("indices", [[0, 0], [0, 2], [0, None], [0, "1"], [0, True], [-1, 0]])
def test_order_by_index_refuses_missing_duplicate_or_foreign_indices(indices) -> None:
    with pytest.raises(CountMismatch, match="does not match"):
        order_by_index("e", 2, [{"index": i} for i in indices])


def test_check_rows_compares_a_batch_dimension() -> None:
    check_rows("t", 3, 3)
    with pytest.raises(CountMismatch, match="expected 3 rows for 3 inputs, received 2") as info:
        check_rows("t", 3, 2)
    assert info.value.received == 2


def test_count_mismatch_survives_pickling() -> None:
    err = CountMismatch("short", expected=4, received=1, status=200, backend="b")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.expected, back.received, back.should_retry) == (CountMismatch, 4, 1, False)
    assert back.status == 200 and back.backend == "b"


def test_check_ranking_wants_top_n_distinct_items() -> None:
    from ipfs_accelerate_py.wire.counts import check_ranking

    ranks = [{"index": 2}, {"index": 0}]
    assert check_ranking("r", 3, 2, ranks) is ranks
    check_ranking("r", 3, None, [{"index": i} for i in (1, 2, 0)])  # no top_n: every item
    check_ranking("r", 2, 5, [{"index": 1}, {"index": 0}])  # top_n over the items sent
    with pytest.raises(CountMismatch, match="expected 3 results"):
        check_ranking("r", 3, None, ranks)
    with pytest.raises(CountMismatch, match="rank index 0 does not match"):
        check_ranking("r", 3, 2, [{"index": 0}, {"index": 0}])
    with pytest.raises(CountMismatch, match="rank index 7"):
        check_ranking("r", 3, 1, [{"index": 7}])
