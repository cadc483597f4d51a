"""InFlightScorer: prefer workers with fewer of this router's requests in flight.

Formula: min-max over candidates of `num_in_flight`, so the fewest scores 1 and the most 0.
Input: the router's own counts, updated on every request, so it reacts between load reports.
No parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.scorers import lower_is_better
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


class InFlightScorer:
    name = "in-flight"

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        return lower_is_better({c.name: float(c.num_in_flight) for c in candidates})
