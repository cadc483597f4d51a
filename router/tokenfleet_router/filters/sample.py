"""SampleFilter: power-of-k-choices; keep k random candidates when the fleet is large.

With many workers, scoring all of them makes every router pick the same "best" worker between
load reports (herding). Sampling k (default 2) at random and choosing the better of those keeps
the load nearly as even as full least-load while avoiding the herd.
Parameters: `k` (kept), `min_candidates` (sample only with at least this many; default 8),
`rng` (injected for tests).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tokenfleet_router.types import RequestInfo, WorkerLoad


class SampleFilter:
    name = "sample"

    def __init__(self, k: int = 2, min_candidates: int = 8, rng: random.Random | None = None) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.min_candidates = max(min_candidates, k + 1)
        self.rng = rng or random.Random()

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]:
        if len(candidates) < self.min_candidates:
            return list(candidates)
        return self.rng.sample(list(candidates), self.k)
