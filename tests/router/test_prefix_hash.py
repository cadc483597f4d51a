from __future__ import annotations

import random

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


def test_every_worker_sent_a_chain_holds_it() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"p" * 64)
    for i in range(6):
        index.record(chain, f"w{i}")
    assert set(index.match_lengths(chain)) == {f"w{i}" for i in range(6)}


def test_a_worker_forgets_least_recently_sent_chains_past_its_cache_size_tail_first() -> None:
    index = PrefixIndex()
    old = block_hashes(b"o" * 64 * 4)
    new = block_hashes(b"n" * 64 * 4)
    index.record(old, "w1", tokens_per_block=16, capacity_tokens=96)
    index.record(old, "w2", tokens_per_block=16, capacity_tokens=96)
    index.record(new, "w1", tokens_per_block=16, capacity_tokens=96)  # 8 blocks of 16 > 96 tokens
    assert index.match_lengths(new) == {"w1": 4}
    # w1 dropped the old chain's last two blocks, as its engine frees a sequence's tail first;
    # w2 has the room and keeps it whole.
    assert index.match_lengths(old) == {"w1": 2, "w2": 4}


def test_sending_a_chain_again_keeps_it_over_newer_ones() -> None:
    index = PrefixIndex()
    a, b, c = (block_hashes(x * 64 * 2) for x in (b"a", b"b", b"c"))
    for chain in (a, b, a, c):  # a is used again after b: b is the least recently used
        index.record(chain, "w", tokens_per_block=10, capacity_tokens=40)
    assert (index.match_lengths(a), index.match_lengths(b), index.match_lengths(c)) == (
        {"w": 2},
        {},
        {"w": 2},
    )


def test_a_worker_without_a_prefix_cache_holds_nothing() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"z" * 64 * 3)
    index.record(chain, "w1")
    index.record(chain, "w1", capacity_tokens=0)  # its report now says it has no prefix cache
    index.record(chain, "w2", capacity_tokens=0)
    assert index.match_lengths(chain) == {}
    assert len(index) == 0


def test_without_reported_sizes_the_workers_share_the_index_bound() -> None:
    index = PrefixIndex(capacity_blocks=4)
    old = block_hashes(b"o" * 64 * 2)
    new = block_hashes(b"n" * 64 * 3)
    index.record(old, "w1")
    index.record(new, "w2")  # two workers known: two blocks each at most
    assert len(index) == 4
    assert index.match_lengths(new) == {"w2": 2}
    assert index.match_lengths(old) == {"w1": 2}


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


def test_matching_by_bisection_agrees_with_walking_the_chain() -> None:
    # Shared heads, different tails, small caches that evict all the time: a worker's blocks of a
    # chain must stay a prefix of it, or bisecting for the end would miscount.
    rng = random.Random(7)
    chains = [
        block_hashes(bytes([h]) * 64 * 3 + bytes([t]) * 64 * rng.randint(1, 6)) for h in b"ab" for t in b"xyz"
    ]
    index = PrefixIndex(capacity_blocks=60)
    for _ in range(300):
        index.record(rng.choice(chains), rng.choice("uvw"), 10.0, rng.choice((None, 80, 150)))
        for chain in chains:
            walked = {}
            for worker, blocks in index._held.items():
                length = next((i for i, block in enumerate(chain) if block not in blocks), len(chain))
                if length:
                    walked[worker] = length
            assert index.match_lengths(chain) == walked
