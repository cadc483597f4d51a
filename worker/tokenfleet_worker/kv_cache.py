"""The paged KV-cache block manager: integer block ids, block tables and the prefix cache (no torch).

Blocks hold `block_size` token positions. A sequence's block table covers all its known tokens from
admission on (the whole prompt is allocated at once, decode grows it a block at a time), so chunked
prefill only ever writes into blocks it already owns.

Prefix cache: a full block, once its keys and values are computed, is registered under a chained hash
of (parent hash, its tokens). A new sequence reuses the longest run of registered blocks that match
its leading full blocks; every hit is verified against the stored tokens and parent hash, so a hash
collision can only cost a miss. Freed blocks keep their contents and hash and go to an LRU list; they
are handed out again only when no never-cached free block is left, oldest first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from tokenfleet_worker.sequence import Sequence

NO_PARENT = 0


def chain_hash(parent_hash: int, token_ids: tuple[int, ...]) -> int:
    return hash((parent_hash, token_ids))


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None  # set once the block is full, computed and registered
    parent_hash: int = NO_PARENT
    token_ids: tuple[int, ...] = ()


def num_blocks_for(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free_uncached: deque[int] = deque(range(num_blocks))
        self._free_cached: OrderedDict[int, None] = OrderedDict()  # LRU order: oldest first
        self._hash_to_block: dict[int, int] = {}
        self.num_prefix_queries = 0  # in tokens
        self.num_prefix_hits = 0  # in tokens

    @property
    def num_free_blocks(self) -> int:
        return len(self._free_uncached) + len(self._free_cached)

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / self.num_blocks

    # -- prefix lookup ---------------------------------------------------------------------------

    def _match_prefix(self, token_ids: list[int]) -> list[int]:
        """Block ids of the longest verified run of cached full blocks at the start of `token_ids`."""
        if not self.enable_prefix_caching:
            return []
        matched: list[int] = []
        parent = NO_PARENT
        for start in range(0, len(token_ids) - self.block_size + 1, self.block_size):
            chunk = tuple(token_ids[start : start + self.block_size])
            block_hash = chain_hash(parent, chunk)
            block_id = self._hash_to_block.get(block_hash)
            if block_id is None:
                break
            block = self.blocks[block_id]
            if block.token_ids != chunk or block.parent_hash != parent:
                break
            matched.append(block_id)
            parent = block_hash
        return matched

    # -- admission -------------------------------------------------------------------------------

    def can_allocate(self, seq: Sequence) -> bool:
        matched = self._match_prefix(seq.token_ids)
        num_revived = sum(1 for b in matched if self.blocks[b].ref_count == 0)
        num_new = num_blocks_for(seq.num_tokens, self.block_size) - len(matched)
        return num_new + num_revived <= self.num_free_blocks

    def allocate(self, seq: Sequence) -> None:
        """Give `seq` blocks for all its tokens, reusing cached prefix blocks; sets its computed count."""
        assert not seq.block_table, "sequence already holds blocks"
        matched = self._match_prefix(seq.token_ids)
        for block_id in matched:
            self._take(block_id)
        seq.block_table = list(matched)
        seq.block_hashes = [self.blocks[b].hash or NO_PARENT for b in matched]
        for _ in range(num_blocks_for(seq.num_tokens, self.block_size) - len(matched)):
            seq.block_table.append(self._take_free())
        num_hit_tokens = len(matched) * self.block_size
        # The last token is always computed again: its logits are needed to sample the next one.
        seq.num_computed_tokens = min(num_hit_tokens, seq.num_tokens - 1)
        if self.enable_prefix_caching:
            self.num_prefix_queries += seq.num_tokens
            self.num_prefix_hits += num_hit_tokens

    # -- decode growth ---------------------------------------------------------------------------

    def can_append(self, seq: Sequence) -> bool:
        """Would computing the newest token fit: it either has a slot or a free block exists."""
        has_slot = len(seq.block_table) * self.block_size >= seq.num_tokens
        return has_slot or self.num_free_blocks > 0

    def append_slot(self, seq: Sequence) -> None:
        if len(seq.block_table) * self.block_size < seq.num_tokens:
            seq.block_table.append(self._take_free())

    # -- prefix registration ---------------------------------------------------------------------

    def commit_computed(self, seq: Sequence) -> None:
        """Register every full block whose keys and values are now computed, for later reuse."""
        if not self.enable_prefix_caching:
            return
        num_full = min(seq.num_computed_tokens // self.block_size, len(seq.block_table))
        for index in range(len(seq.block_hashes), num_full):
            parent = seq.block_hashes[-1] if seq.block_hashes else NO_PARENT
            start = index * self.block_size
            chunk = tuple(seq.token_ids[start : start + self.block_size])
            block_hash = chain_hash(parent, chunk)
            block = self.blocks[seq.block_table[index]]
            existing = self._hash_to_block.get(block_hash)
            if existing is None or existing == block.block_id:
                self._hash_to_block[block_hash] = block.block_id
                block.hash, block.parent_hash, block.token_ids = block_hash, parent, chunk
            seq.block_hashes.append(block_hash)

    # -- release ---------------------------------------------------------------------------------

    def free(self, seq: Sequence) -> None:
        """Drop the sequence's references; tail blocks go to the LRU first so prefixes outlive them."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0, f"block {block_id} freed twice"
            if block.ref_count == 0:
                if block.hash is not None:
                    self._free_cached[block_id] = None
                else:
                    self._free_uncached.append(block_id)
        seq.block_table = []
        seq.block_hashes = []

    # -- internals -------------------------------------------------------------------------------

    def _take(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            self._free_cached.pop(block_id, None)
        block.ref_count += 1

    def _take_free(self) -> int:
        if self._free_uncached:
            block_id = self._free_uncached.popleft()
        elif self._free_cached:
            block_id, _ = self._free_cached.popitem(last=False)
            self._evict(block_id)
        else:
            raise RuntimeError("no free KV-cache block; callers must check can_allocate/can_append")
        self.blocks[block_id].ref_count = 1
        return block_id

    def _evict(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.hash is not None and self._hash_to_block.get(block.hash) == block_id:
            del self._hash_to_block[block.hash]
        block.hash, block.parent_hash, block.token_ids = None, NO_PARENT, ()
