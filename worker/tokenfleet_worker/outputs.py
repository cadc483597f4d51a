"""What the engine hands back: per-request output deltas and a snapshot of its state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tokenfleet_common.load_report import LoadReport


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # (token text, logprob), best first


@dataclass(frozen=True)
class RequestOutput:
    """New tokens and text of one sequence since its last output; `finished` marks the last one."""

    request_id: str
    index: int
    text: str
    token_ids: tuple[int, ...]
    num_prompt_tokens: int
    num_output_tokens: int
    finished: bool = False
    finish_reason: str | None = None  # stop | length | deadline | abort
    num_cached_tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()
    error: str | None = None  # set when the engine could not run the request at all
    is_client_error: bool = False  # the error is the request's fault (HTTP 400), not the engine's


@dataclass(frozen=True)
class EngineStats:
    num_waiting: int = 0
    num_running: int = 0
    num_total_blocks: int = 0
    num_free_blocks: int = 0
    block_size: int = 16
    has_prefix_cache: bool = True
    tokens_in_flight: int = 0
    prefill_tokens_waiting: int = 0
    max_num_seqs: int = 0
    num_prompt_tokens: int = 0  # counters from here on
    num_generation_tokens: int = 0
    num_preemptions: int = 0
    num_prefix_queries: int = 0
    num_prefix_hits: int = 0

    @property
    def kv_cache_usage(self) -> float:
        if self.num_total_blocks == 0:
            return 0.0
        return 1.0 - self.num_free_blocks / self.num_total_blocks

    def load_report(self, *, draining: bool, ready: bool) -> LoadReport:
        return LoadReport(
            waiting=self.num_waiting,
            running=self.num_running,
            kv_cache_usage=round(self.kv_cache_usage, 6),
            free_blocks=self.num_free_blocks,
            total_blocks=self.num_total_blocks,
            tokens_in_flight=self.tokens_in_flight,
            max_num_seqs=self.max_num_seqs,
            draining=draining,
            ready=ready,
            prefill_tokens_waiting=self.prefill_tokens_waiting,
            prefix_cache_tokens=self.num_total_blocks * self.block_size if self.has_prefix_cache else 0,
        )


class EngineObserver(Protocol):
    """Receives per-event timings for histograms (metrics.py); counters come from EngineStats."""

    def observe_step(self, num_seqs: int, num_tokens: int) -> None: ...

    def observe_first_token(self, ttft_s: float, queue_s: float) -> None: ...

    def observe_token_gap(self, seconds: float) -> None: ...

    def observe_finished(self, reason: str, e2e_s: float, tpot_s: float | None) -> None: ...
