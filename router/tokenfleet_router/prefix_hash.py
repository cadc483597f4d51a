"""Prompt prefixes as chains of block hashes, and which worker recently served which chain.

The engine's prefix cache keys each full KV block by a hash of the block's tokens chained with
the previous block's hash, so equal hashes mean equal prefixes. The router has no tokenizer, so
it cuts the prompt's UTF-8 bytes into fixed-size blocks instead (about 4 bytes per token for
English text; 64 bytes is roughly one 16-token engine block). Only full blocks are hashed, as in
the engine.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

DEFAULT_BLOCK_BYTES = 64
BYTES_PER_TOKEN = 4  # rough average for English text and code


def block_hashes(data: bytes, block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[int, ...]:
    """Chained 64-bit hashes of every full `block_bytes` block of `data`."""
    if block_bytes <= 0:
        raise ValueError("block_bytes must be positive")
    hashes: list[int] = []
    previous = b""
    for start in range(0, len(data) - block_bytes + 1, block_bytes):
        digest = hashlib.blake2b(previous + data[start : start + block_bytes], digest_size=8).digest()
        hashes.append(int.from_bytes(digest, "big"))
        previous = digest
    return tuple(hashes)


def estimate_tokens(data: bytes) -> int:
    return (len(data) + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN


def _held_prefix(hashes: Sequence[int], blocks: Mapping[int, float]) -> int:
    """How many leading blocks of `hashes` are in `blocks`.

    What a worker holds of a chain is always a prefix of it (a block is recorded only with every
    block before it, and those are touched after it, so evicted after it), so bisect for its end
    instead of walking a chain that may be thousands of blocks long."""
    return bisect.bisect_left(range(len(hashes)), True, key=lambda i: hashes[i] not in blocks)


class PrefixIndex:
    """Which prompt prefixes each worker holds, as an LRU per worker sized to its prefix cache.

    A chained hash stands for the whole prefix up to its block, so a worker that holds block i
    holds every block before it too; its match length is the last such i plus one. Each worker's
    entries are charged the prompt tokens they stand for and evicted least recently used first
    once they pass the cache size that worker reports (`capacity_tokens`), tail blocks before
    head blocks as the engine frees them. So the index forgets a prefix about when the worker
    does: a prefix the worker has evicted is no longer counted as a hit there, and a request is
    not sent after a cache that is gone. Without a reported size a worker keeps an even share
    of `capacity_blocks`, the bound on the router's own memory.
    """

    def __init__(self, capacity_blocks: int = 200_000) -> None:
        if capacity_blocks <= 0:
            raise ValueError("capacity_blocks must be positive")
        self.capacity_blocks = capacity_blocks
        self._held: dict[str, OrderedDict[int, float]] = {}  # worker -> block -> tokens, LRU first
        self._held_tokens: dict[str, float] = {}
        # The last query and its answer: a request's chain is matched by its scorer and again by
        # the strategy for the picked worker, and a long prompt's chain is thousands of blocks.
        self._last: tuple[Sequence[int], Mapping[str, int]] | None = None

    def __len__(self) -> int:
        return sum(len(blocks) for blocks in self._held.values())

    def match_lengths(self, hashes: Sequence[int]) -> Mapping[str, int]:
        """Number of leading blocks of `hashes` each known worker holds (workers with 0 omitted)."""
        if self._last is not None and self._last[0] is hashes:
            return self._last[1]  # the same chain object, and the index has not changed since
        matched: dict[str, int] = {}
        for worker, blocks in self._held.items():
            held = _held_prefix(hashes, blocks)
            if held:
                matched[worker] = held
        self._last = (hashes, matched)
        return matched

    def record(
        self,
        hashes: Sequence[int],
        worker: str,
        tokens_per_block: float = 1.0,
        capacity_tokens: int | None = None,
    ) -> None:
        """Remember that `worker` now holds every block of this chain, each `tokens_per_block` tokens.

        `capacity_tokens` is the worker's prefix-cache size from its load report (None: unknown)."""
        self._last = None
        if capacity_tokens is not None and capacity_tokens <= 0:
            self.forget_worker(worker)  # no prefix cache there: it holds nothing
            return
        blocks = self._held.setdefault(worker, OrderedDict())
        held = self._held_tokens.get(worker, 0.0)
        for block in reversed(hashes):  # the head touched last: evicted last
            held += tokens_per_block - blocks.pop(block, 0.0)
            blocks[block] = tokens_per_block
        max_blocks = max(1, self.capacity_blocks // len(self._held))
        while blocks and (
            len(blocks) > max_blocks or (capacity_tokens is not None and held > capacity_tokens)
        ):
            held -= blocks.popitem(last=False)[1]
        self._held_tokens[worker] = held

    def forget_worker(self, worker: str) -> None:
        """Drop a worker that left the fleet; its cache is gone with it."""
        self._last = None
        self._held.pop(worker, None)
        self._held_tokens.pop(worker, None)
