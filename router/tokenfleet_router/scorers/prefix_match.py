"""PrefixMatchScorer: prefer the worker that recently served the longest prefix of this prompt.

Formula: `matched_blocks / len(request.block_hashes)`, where matched_blocks is the number of
leading prompt blocks the worker served (from the shared `PrefixIndex`); 0 for a prompt shorter
than one block. Input: `RequestInfo.block_hashes`. Parameter: the index, which the strategy
updates after each pick.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.prefix_hash import PrefixIndex
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


class PrefixMatchScorer:
    name = "prefix-match"

    def __init__(self, index: PrefixIndex) -> None:
        self.index = index

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        num_blocks = len(request.block_hashes)
        if num_blocks == 0:
            return {c.name: 0.0 for c in candidates}
        matched = self.index.match_lengths(request.block_hashes)
        return {c.name: matched.get(c.name, 0) / num_blocks for c in candidates}
