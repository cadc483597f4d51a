"""One simulated request: what the trace says about it and what happened to it."""

from __future__ import annotations

from dataclasses import dataclass

# Reasons a request did not complete; every arrived request ends completed or with one of these.
REJECT_OVERLOADED = "overloaded-429"  # every worker saturated past the router's hold timeout
REJECT_NO_CAPACITY = "no-capacity-503"  # no worker at all within the cold-start hold timeout
REJECT_TOO_LARGE = "too-large-400"  # prompt + output exceed a replica's KV cache or max model length
REJECT_DRAIN_TIMEOUT = "drain-timeout"  # still running when its draining worker was killed
REJECT_UNFINISHED = "unfinished-at-end"  # the simulation ended first


@dataclass(slots=True)
class SimRequest:
    id: int
    arrival: float
    prompt_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()  # prefix block ids (equal ids = equal prefix blocks)
    worker: str | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    reject_reason: str | None = None
    prefill_left: int = 0  # tokens still to prefill (after prefix-cache hits)
    finish_step: int = 0  # the worker's decode-step count at which the last token is out

    @property
    def is_done(self) -> bool:
        return self.finish_time is not None or self.reject_reason is not None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_time is None else self.first_token_time - self.arrival

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first; 0 for one-token answers."""
        if self.finish_time is None or self.first_token_time is None:
            return None
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_time - self.first_token_time) / (self.output_tokens - 1)
