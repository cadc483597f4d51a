"""Prompt prefixes as chains of block hashes, and which worker recently served which chain.

The engine's prefix cache keys each full KV block by a hash of the block's tokens chained with
the previous block's hash, so equal hashes mean equal prefixes. The router has no tokenizer, so
it cuts the prompt's UTF-8 bytes into fixed-size blocks instead (about 4 bytes per token for
English text; 64 bytes is roughly one 16-token engine block). Only full blocks are hashed, as in
the engine.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

DEFAULT_BLOCK_BYTES = 64
BYTES_PER_TOKEN = 4  # rough average for English text and code
MAX_WORKERS_PER_BLOCK = 4  # several workers may hold a popular prefix; remember the most recent few


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


class PrefixIndex:
    """LRU-bounded map from block hash to the workers that most recently served it.

    A chained hash stands for the whole prefix up to its block, so a worker that holds block i
    served every block before it too; its match length is the last such i plus one.
    """

    def __init__(self, capacity_blocks: int = 200_000) -> None:
        if capacity_blocks <= 0:
            raise ValueError("capacity_blocks must be positive")
        self.capacity_blocks = capacity_blocks
        self._workers_by_block: OrderedDict[int, list[str]] = OrderedDict()
        # The last query and its answer: a request's chain is matched by its scorer and again by
        # the strategy for the picked worker, and a long prompt's chain is thousands of blocks.
        self._last: tuple[Sequence[int], Mapping[str, int]] | None = None

    def __len__(self) -> int:
        return len(self._workers_by_block)

    def match_lengths(self, hashes: Sequence[int]) -> Mapping[str, int]:
        """Number of leading blocks of `hashes` each known worker served (workers with 0 omitted)."""
        if self._last is not None and self._last[0] is hashes:
            return self._last[1]  # the same chain object, and the index has not changed since
        matched: dict[str, int] = {}
        for i, block in enumerate(hashes):
            workers = self._workers_by_block.get(block)
            if workers is None:
                break  # a missing link: no worker can match past it
            for worker in workers:
                matched[worker] = i + 1
        self._last = (hashes, matched)
        return matched

    def record(self, hashes: Iterable[int], worker: str) -> None:
        """Remember that `worker` now holds every block of this chain (most recent first)."""
        self._last = None
        by_block = self._workers_by_block
        for block in hashes:
            workers = by_block.get(block)
            if workers is None:
                by_block[block] = [worker]
                continue
            by_block.move_to_end(block)
            if workers[0] != worker:  # a conversation mostly stays: then the list is already right
                if worker in workers:
                    workers.remove(worker)
                workers.insert(0, worker)
                del workers[MAX_WORKERS_PER_BLOCK:]
        while len(by_block) > self.capacity_blocks:
            by_block.popitem(last=False)

    def forget_worker(self, worker: str) -> None:
        """Drop a worker that left the fleet; its cache is gone with it."""
        self._last = None
        empty: list[int] = []
        for block, workers in self._workers_by_block.items():
            if worker in workers:
                workers.remove(worker)
                if not workers:
                    empty.append(block)
        for block in empty:
            del self._workers_by_block[block]
