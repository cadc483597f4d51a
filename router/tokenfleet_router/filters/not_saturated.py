"""NotSaturatedFilter: keep workers that can take another request now.

Input: `WorkerLoad.is_saturated`, which the load view sets for a stale load report, a queue or
KV cache past its limit, or too many requests in flight. No parameters. When it removes every
candidate, admission holds the request rather than overloading a worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.types import RequestInfo, WorkerLoad


class NotSaturatedFilter:
    name = "not-saturated"

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]:
        return [c for c in candidates if not c.is_saturated]
