"""TokensInFlightScorer: prefer workers with fewer estimated tokens in flight.

Formula: min-max over candidates of `tokens_in_flight` (this router's estimate of prompt plus
requested output tokens of its unfinished requests). A long prompt weighs more than a short
one, which request counts miss. No parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.scorers import lower_is_better
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


class TokensInFlightScorer:
    name = "tokens-in-flight"

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        return lower_is_better({c.name: float(c.tokens_in_flight) for c in candidates})
