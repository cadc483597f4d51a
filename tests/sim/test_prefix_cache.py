"""The benchmark models' prefix cache: leading-block matches and tail-first eviction."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.sim.prefix_cache import PrefixCache

pytestmark = pytest.mark.unit


def test_only_leading_cached_blocks_match() -> None:
    cache = PrefixCache(10)
    cache.remember((1, 2, 3))
    assert cache.match((1, 2, 3, 4)) == 3
    assert cache.match((1, 9, 3)) == 1
    assert cache.match((4, 1, 2)) == 0  # the first block missing: nothing after it counts


def test_a_full_cache_evicts_a_chain_tail_before_its_head() -> None:
    # Like the engine's block manager: a head evicted first would leave its tail cached but unreachable.
    cache = PrefixCache(4)
    cache.remember((1, 2, 3))
    cache.remember((9, 8))  # one over: the oldest chain loses its last block, not its first
    assert set(cache.blocks) == {1, 2, 9, 8}
    assert cache.match((1, 2, 3)) == 2


def test_a_match_keeps_the_matched_chain_over_older_ones() -> None:
    cache = PrefixCache(4)
    cache.remember((1, 2))
    cache.remember((5, 6))
    cache.match((1, 2))  # used again: now the most recent
    cache.remember((7,))
    assert cache.match((1, 2)) == 2 and cache.match((5, 6)) == 1
