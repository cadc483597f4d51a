"""Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, 2016).

Each worker owns `num_virtual_nodes` points on a 64-bit ring. A key goes to the first worker
clockwise from the key's point whose load is below the bound

    bound(c) = ceil(c * (total_load + 1) / num_workers)

so a hot key spills to the next worker on the ring instead of piling onto one, while keys that
are not hot keep their worker as the fleet changes (only ~1/n of keys move when a worker comes
or goes). `c` > 1 is the allowed imbalance: 1.25 means no worker takes more than 25% above the
mean (rounded up).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping

DEFAULT_VIRTUAL_NODES = 64
DEFAULT_BALANCE_FACTOR = 1.25


def ring_point(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def load_bound(total_load: int, num_workers: int, balance_factor: float = DEFAULT_BALANCE_FACTOR) -> int:
    """Largest load a worker may already have and still take one more request."""
    if num_workers <= 0:
        return 0
    if balance_factor < 1.0:
        raise ValueError("balance_factor must be >= 1")
    # Bound on the load *after* placing this request, so subtract it back out.
    return math.ceil(balance_factor * (total_load + 1) / num_workers) - 1


class HashRing:
    """The ring of worker points; immutable, rebuild it when the fleet changes."""

    def __init__(self, workers: Iterable[str], num_virtual_nodes: int = DEFAULT_VIRTUAL_NODES) -> None:
        self.workers = tuple(sorted(set(workers)))
        points = [
            (ring_point(f"{worker}#{i}".encode()), worker)
            for worker in self.workers
            for i in range(num_virtual_nodes)
        ]
        points.sort()
        self._points = [p for p, _ in points]
        self._owners = [w for _, w in points]

    def order(self, key: int) -> list[str]:
        """All workers in clockwise order from `key`'s point, each once."""
        if not self._points:
            return []
        start = bisect.bisect_left(self._points, key % (1 << 64))
        seen: dict[str, None] = {}
        n = len(self._points)
        for i in range(n):
            owner = self._owners[(start + i) % n]
            if owner not in seen:
                seen[owner] = None
                if len(seen) == len(self.workers):
                    break
        return list(seen)

    def pick(
        self,
        key: int,
        loads: Mapping[str, int],
        balance_factor: float = DEFAULT_BALANCE_FACTOR,
    ) -> str | None:
        """First worker clockwise from `key` among those in `loads` whose load is within the bound."""
        present = [w for w in self.order(key) if w in loads]
        if not present:
            return None
        bound = load_bound(sum(loads[w] for w in present), len(present), balance_factor)
        for worker in present:
            if loads[worker] <= bound:
                return worker
        return min(present, key=lambda w: loads[w])  # unreachable for c >= 1; kept for safety
