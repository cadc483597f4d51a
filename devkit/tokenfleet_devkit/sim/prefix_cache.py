"""A worker's prefix cache as the benchmark models count it: an LRU of trace blocks (`hash_ids`).

A prompt's blocks form a chain, and a block is only useful while every block before it is cached.
Blocks are touched tail first, head last, as the engine's block manager frees a sequence's blocks,
so the LRU evicts a chain's tail before its head; a head evicted first would leave the tail cached
but unreachable. Shared by the fleet simulator's worker and the router benchmark's worker model.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    def __init__(self, capacity_blocks: int) -> None:
        self.capacity_blocks = max(1, capacity_blocks)
        self.blocks: OrderedDict[int, None] = OrderedDict()  # least recently used first

    def match(self, hash_ids: tuple[int, ...]) -> int:
        """Leading blocks of `hash_ids` already cached (touched as used)."""
        matched = 0
        for block in hash_ids:
            if block not in self.blocks:
                break
            matched += 1
        self._touch(hash_ids[:matched])
        return matched

    def remember(self, hash_ids: tuple[int, ...]) -> None:
        """Cache the whole chain, evicting the least recently used blocks past capacity."""
        self._touch(hash_ids)
        while len(self.blocks) > self.capacity_blocks:
            self.blocks.popitem(last=False)

    def _touch(self, hash_ids: tuple[int, ...]) -> None:
        for block in reversed(hash_ids):
            self.blocks[block] = None
            self.blocks.move_to_end(block)
