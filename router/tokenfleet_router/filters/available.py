"""AvailableFilter: keep workers that are ready, not draining and not recently failed.

Input: `WorkerLoad.is_available`. No parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.types import RequestInfo, WorkerLoad


class AvailableFilter:
    name = "available"

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]:
        return [c for c in candidates if c.is_available]
