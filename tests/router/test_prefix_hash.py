from __future__ import annotations

import pytest

from tokenfleet_router.prefix_hash import PrefixIndex, block_hashes, estimate_tokens

pytestmark = pytest.mark.unit


def test_only_full_blocks_are_hashed() -> None:
    assert block_hashes(b"x" * 63, 64) == ()
    assert len(block_hashes(b"x" * 64, 64)) == 1
    assert len(block_hashes(b"x" * 200, 64)) == 3


def test_shared_prefix_gives_shared_leading_hashes_and_chain_breaks_after_difference() -> None:
    a = block_hashes(b"A" * 128 + b"B" * 64, 64)
    b = block_hashes(b"A" * 128 + b"C" * 64, 64)
    assert a[:2] == b[:2]
    assert a[2] != b[2]


def test_hash_is_chained_not_per_block() -> None:
    # Equal blocks at different depths differ, since each hash covers the whole prefix.
    hashes = block_hashes(b"Z" * 192, 64)
    assert len(set(hashes)) == 3
    # The same block after a different prefix differs too.
    assert block_hashes(b"Q" * 64 + b"Z" * 64, 64)[1] != block_hashes(b"Z" * 128, 64)[1]


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        block_hashes(b"abc", 0)


@pytest.mark.parametrize(("size", "tokens"), [(0, 0), (1, 1), (4, 1), (5, 2), (400, 100)])
def test_estimate_tokens(size: int, tokens: int) -> None:
    assert estimate_tokens(b"x" * size) == tokens


def test_match_lengths_prefers_longest_and_stops_at_first_unknown_block() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"s" * 64 * 4)
    index.record(chain[:2], "w1")
    index.record(chain, "w2")
    assert index.match_lengths(chain) == {"w1": 2, "w2": 4}
    other = block_hashes(b"t" * 64 * 4)
    assert index.match_lengths(other) == {}


def test_most_recent_workers_are_kept_per_block() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"p" * 64)
    for i in range(6):
        index.record(chain, f"w{i}")
    assert set(index.match_lengths(chain)) == {"w5", "w4", "w3", "w2"}


def test_capacity_evicts_least_recently_used_blocks() -> None:
    index = PrefixIndex(capacity_blocks=4)
    old = block_hashes(b"o" * 64 * 2)
    new = block_hashes(b"n" * 64 * 3)
    index.record(old, "w1")
    index.record(new, "w2")
    assert len(index) == 4
    assert index.match_lengths(new) == {"w2": 3}
    assert index.match_lengths(old) == {}  # its first block was evicted, so the chain is gone


def test_forget_worker_removes_it_everywhere() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"f" * 128)
    index.record(chain, "w1")
    index.record(chain[:1], "w2")
    index.forget_worker("w1")
    assert index.match_lengths(chain) == {"w2": 1}
    index.forget_worker("w2")
    assert len(index) == 0


def test_a_repeated_query_is_answered_again_after_the_index_changes() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"x" * 64 * 5)
    assert index.match_lengths(chain) == {}
    index.record(chain, "w1")  # the same chain object, asked again: the remembered answer is stale
    assert index.match_lengths(chain) == {"w1": 5}
    assert index.match_lengths(chain) is index.match_lengths(chain)  # unchanged index: not walked again
    index.forget_worker("w1")
    assert index.match_lengths(chain) == {}
