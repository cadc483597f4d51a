"""Block manager: allocation, growth, refcounts, prefix hits verified against tokens, LRU reuse."""

from __future__ import annotations

import pytest

from tokenfleet_worker.batch import SamplingParams
from tokenfleet_worker.kv_cache import BlockManager, num_blocks_for
from tokenfleet_worker.sequence import Sequence

pytestmark = pytest.mark.unit
BS = 4


def make_seq(tokens: list[int], seq_id: int = 0) -> Sequence:
    return Sequence(seq_id, f"r{seq_id}", tuple(tokens), SamplingParams(), arrival_time=0.0)


def compute_all(bm: BlockManager, seq: Sequence) -> None:
    """Pretend the runner computed every token, as the scheduler reports after a step."""
    seq.num_computed_tokens = seq.num_tokens
    bm.commit_computed(seq)


@pytest.mark.parametrize(("tokens", "blocks"), [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3)])
def test_num_blocks_for(tokens: int, blocks: int) -> None:
    assert num_blocks_for(tokens, BS) == blocks


def test_allocate_covers_prompt_and_free_returns_blocks() -> None:
    bm = BlockManager(8, BS)
    seq = make_seq(list(range(10)))
    assert bm.can_allocate(seq)
    bm.allocate(seq)
    assert len(seq.block_table) == 3
    assert bm.num_free_blocks == 5
    assert seq.num_computed_tokens == 0
    bm.free(seq)
    assert bm.num_free_blocks == 8
    assert seq.block_table == []


def test_cannot_allocate_beyond_capacity() -> None:
    bm = BlockManager(2, BS)
    assert not bm.can_allocate(make_seq(list(range(9))))
    assert bm.can_allocate(make_seq(list(range(8))))


def test_append_slot_adds_a_block_only_at_a_boundary() -> None:
    bm = BlockManager(4, BS)
    seq = make_seq([1, 2, 3, 4])
    bm.allocate(seq)
    seq.token_ids.append(5)  # position 4 needs a second block
    assert bm.can_append(seq)
    bm.append_slot(seq)
    assert len(seq.block_table) == 2
    seq.token_ids.append(6)
    bm.append_slot(seq)
    assert len(seq.block_table) == 2


def test_can_append_false_when_full_and_at_boundary() -> None:
    bm = BlockManager(1, BS)
    seq = make_seq([1, 2, 3, 4])
    bm.allocate(seq)
    assert bm.can_append(seq)  # the newest token still has its slot
    seq.token_ids.append(5)
    assert not bm.can_append(seq)


def test_prefix_hit_shares_blocks_and_counts_tokens() -> None:
    bm = BlockManager(16, BS)
    first = make_seq(list(range(10)), 0)
    bm.allocate(first)
    compute_all(bm, first)
    second = make_seq([*range(8), 99, 98, 97], 1)
    bm.allocate(second)
    assert second.block_table[:2] == first.block_table[:2]
    assert second.block_table[2] != first.block_table[2]
    assert second.num_computed_tokens == 8
    assert bm.blocks[first.block_table[0]].ref_count == 2
    assert bm.num_prefix_queries == 10 + 11
    assert bm.num_prefix_hits == 8


def test_uncomputed_blocks_are_not_hits() -> None:
    # A block is only reusable once its keys and values were written.
    bm = BlockManager(16, BS)
    first = make_seq(list(range(8)), 0)
    bm.allocate(first)
    second = make_seq(list(range(8)), 1)
    bm.allocate(second)
    assert second.num_computed_tokens == 0
    assert set(second.block_table).isdisjoint(first.block_table)


def test_full_hit_still_recomputes_the_last_token() -> None:
    bm = BlockManager(16, BS)
    first = make_seq(list(range(8)), 0)
    bm.allocate(first)
    compute_all(bm, first)
    again = make_seq(list(range(8)), 1)
    bm.allocate(again)
    assert again.block_table == first.block_table
    assert again.num_computed_tokens == 7


def test_hit_is_verified_against_stored_tokens() -> None:
    bm = BlockManager(16, BS)
    first = make_seq(list(range(8)), 0)
    bm.allocate(first)
    compute_all(bm, first)
    # Corrupt the stored tokens of the first block: a lookup must not trust the hash alone.
    bm.blocks[first.block_table[0]].token_ids = (7, 7, 7, 7)
    other = make_seq(list(range(8)), 1)
    bm.allocate(other)
    assert other.num_computed_tokens == 0
    assert bm.num_prefix_hits == 0


def test_freed_cached_blocks_are_revived_by_a_later_hit() -> None:
    bm = BlockManager(4, BS)
    first = make_seq(list(range(8)), 0)
    bm.allocate(first)
    compute_all(bm, first)
    blocks = list(first.block_table)
    bm.free(first)
    assert bm.num_free_blocks == 4
    again = make_seq([*range(8), 42], 1)
    assert bm.can_allocate(again)
    bm.allocate(again)
    assert again.block_table[:2] == blocks
    assert again.num_computed_tokens == 8
    assert bm.num_free_blocks == 1


def test_uncached_free_blocks_are_used_before_evicting_cached_ones() -> None:
    bm = BlockManager(4, BS)
    cached = make_seq(list(range(8)), 0)
    bm.allocate(cached)
    compute_all(bm, cached)
    cached_blocks = list(cached.block_table)
    bm.free(cached)
    other = make_seq([50, 51, 52, 53, 54, 55, 56, 57], 1)
    bm.allocate(other)  # two never-cached blocks are free: the cached prefix survives
    assert set(other.block_table).isdisjoint(cached_blocks)
    assert bm.can_allocate(make_seq(list(range(8)), 2))
    hit = make_seq([*range(8), 1], 2)
    bm.free(other)
    bm.allocate(hit)
    assert hit.num_computed_tokens == 8


def test_lru_evicts_the_least_recently_freed_and_tail_first() -> None:
    bm = BlockManager(4, BS)
    a = make_seq(list(range(8)), 0)
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq(list(range(100, 108)), 1)
    bm.allocate(b)
    compute_all(bm, b)
    a_blocks = list(a.block_table)
    bm.free(a)  # a's blocks are older in the LRU than b's
    bm.free(b)
    newcomer = make_seq(list(range(200, 204)), 2)
    bm.allocate(newcomer)  # evicts one block: a's tail block (freed first)
    assert newcomer.block_table == [a_blocks[1]]
    probe_a = make_seq([*range(8), 9], 3)
    probe_b = make_seq([*range(100, 108), 9], 4)
    assert bm._match_prefix(probe_a.token_ids) == [a_blocks[0]]
    assert len(bm._match_prefix(probe_b.token_ids)) == 2


def test_shared_block_freed_by_one_owner_stays_in_use() -> None:
    bm = BlockManager(8, BS)
    a = make_seq(list(range(8)), 0)
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq([*range(8), 1], 1)
    bm.allocate(b)
    bm.free(a)
    assert bm.blocks[b.block_table[0]].ref_count == 1
    assert bm.num_free_blocks == 8 - 3


def test_prefix_caching_disabled_never_hits() -> None:
    bm = BlockManager(8, BS, enable_prefix_caching=False)
    a = make_seq(list(range(8)), 0)
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq(list(range(8)), 1)
    bm.allocate(b)
    assert b.num_computed_tokens == 0
    assert bm.num_prefix_queries == 0


def test_decode_blocks_become_reusable_once_full() -> None:
    bm = BlockManager(8, BS)
    a = make_seq([1, 2, 3], 0)
    bm.allocate(a)
    compute_all(bm, a)
    a.token_ids.append(4)  # generated token fills the first block
    a.num_computed_tokens = 4
    bm.commit_computed(a)
    b = make_seq([1, 2, 3, 4, 5], 1)
    bm.allocate(b)
    assert b.block_table[0] == a.block_table[0]
    assert b.num_computed_tokens == 4
