"""QueueDepthScorer: prefer workers with fewer requests waiting in their engine queue.

Formula: min-max over candidates of `num_waiting` (from the worker's load report), so the
shortest queue scores 1 and the longest 0; all equal score 1. No parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.scorers import lower_is_better
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


class QueueDepthScorer:
    name = "queue-depth"

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        return lower_is_better({c.name: float(c.num_waiting) for c in candidates})
