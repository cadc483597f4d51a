"""LoadBoundFilter: keep workers whose in-flight count is within the bounded-load limit.

Formula: keep c when `c.num_in_flight <= max(min_bound, ceil(balance_factor * (sum of
in-flight + 1) / n) - 1)` over the n candidates (see `bounded_load.load_bound`). At least one
candidate always passes. Parameters: `balance_factor` >= 1, the allowed imbalance over the mean
(default 1.25); `min_bound`, in-flight requests any worker may hold regardless (default 4: an
engine batching dozens of sequences is not overloaded by a few, and without this floor a
lightly loaded fleet would turn affinity away whenever its worker had one request more than
the others). Placed before affinity scorers, it stops a hot prefix or session from piling onto
one worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.bounded_load import DEFAULT_BALANCE_FACTOR, load_bound
from tokenfleet_router.types import RequestInfo, WorkerLoad


class LoadBoundFilter:
    name = "load-bound"

    def __init__(self, balance_factor: float = DEFAULT_BALANCE_FACTOR, min_bound: int = 4) -> None:
        if balance_factor < 1.0:
            raise ValueError("balance_factor must be >= 1")
        self.balance_factor = balance_factor
        self.min_bound = min_bound

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]:
        total = sum(c.num_in_flight for c in candidates)
        bound = max(self.min_bound, load_bound(total, len(candidates), self.balance_factor))
        return [c for c in candidates if c.num_in_flight <= bound]
