"""PrefillWorkScorer: prefer the worker that would compute this prompt's first token soonest.

Formula: `cost = prefill_tokens_in_flight + miss_weight * uncached`, where `uncached` is the
part of this prompt the worker has not served before (`num_prompt_tokens * (1 - matched_blocks /
len(block_hashes))` from the shared `PrefixIndex`; the whole prompt without an index); score
`(lowest cost + 1) / (cost + 1)`, so the cheapest scores 1 and one with twice the work 0.5.
Why: time to first token is the prefill queued ahead of a request plus its own uncached
prefill, both counted in tokens, so load and cache hits are weighed in one unit. Requests that
are only decoding barely delay a new prompt, which is why queue lengths and tokens in flight
mislead here. `miss_weight` > 1 charges a miss also for the reuse it forgoes: the turns that
follow find their prefix where this one ran. Ratios rather than min-max keep small differences
small. Registered twice: "prefill-work" (with the index) and "prefill-queue" (a pure load
score: queued prefill only).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.prefix_hash import PrefixIndex
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


def uncached_tokens(request: RequestInfo, matched_blocks: int) -> float:
    """The prompt tokens past the first `matched_blocks` blocks (prompts are cut evenly into blocks)."""
    num_blocks = len(request.block_hashes)
    if num_blocks == 0:
        return float(request.num_prompt_tokens)
    size = max(request.num_prompt_tokens, num_blocks)  # a block holds at least one token
    return size * (1.0 - min(matched_blocks, num_blocks) / num_blocks)


class PrefillWorkScorer:
    def __init__(
        self, index: PrefixIndex | None, miss_weight: float = 1.0, name: str = "prefill-work"
    ) -> None:
        if miss_weight < 0:
            raise ValueError("miss_weight must be >= 0")
        self.index = index
        self.miss_weight = miss_weight
        self.name = name

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        if not candidates:
            return {}
        matched = (
            self.index.match_lengths(request.block_hashes)
            if self.index is not None and request.block_hashes
            else {}
        )
        cost = {
            c.name: c.prefill_tokens_in_flight
            + self.miss_weight * uncached_tokens(request, matched.get(c.name, 0))
            for c in candidates
        }
        lowest = min(cost.values())
        return {name: (lowest + 1.0) / (value + 1.0) for name, value in cost.items()}
