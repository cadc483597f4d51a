"""KvUsageScorer: prefer workers with free KV-cache memory.

Formula: `1 - kv_cache_usage`, clamped to [0, 1] (absolute, not relative: a fleet that is 90%
full everywhere should not look roomy). Input: the worker's load report. No parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


class KvUsageScorer:
    name = "kv-usage"

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        return {c.name: min(1.0, max(0.0, 1.0 - c.kv_cache_usage)) for c in candidates}
