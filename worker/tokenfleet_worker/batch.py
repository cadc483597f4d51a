"""The contract between the scheduler/engine (no torch) and a runner (the only device code).

Each engine step the scheduler produces a `StepBatch`: for every scheduled sequence, the chunk of
tokens to compute this step, where it starts, and the sequence's block table. The runner writes
the chunk's keys and values into those blocks, attends over everything before it, and returns one
sampled token for each sequence whose chunk reaches the end of its known tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means disabled
    seed: int | None = None  # reproducible per request when set
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # number of top logprobs to return per token, optional

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


@dataclass(frozen=True)
class ScheduledSeq:
    seq_id: int
    token_ids: tuple[int, ...]  # the chunk computed this step (prefill chunk, or the one new decode token)
    start_pos: int  # absolute position of token_ids[0]; tokens before it are already in the KV cache
    block_table: tuple[int, ...]  # physical block ids covering positions [0, start_pos + len(token_ids))
    needs_sample: bool  # True when the chunk ends at the last known token: sample the next one
    sampling: SamplingParams = field(default_factory=SamplingParams)
    num_generated: int = 0  # tokens generated so far; with seed, selects the per-step random stream


@dataclass(frozen=True)
class StepBatch:
    seqs: tuple[ScheduledSeq, ...]

    @property
    def num_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.seqs)


@dataclass(frozen=True)
class SampledToken:
    seq_id: int
    token_id: int
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


class Runner(Protocol):
    """Executes one step on a device (torch) or in a performance model (sim)."""

    block_size: int
    num_blocks: int  # physical KV blocks available, sized from the memory budget

    def execute(self, batch: StepBatch) -> list[SampledToken]:
        """Run the batch; return one sampled token per sequence with `needs_sample`, in batch order."""
        ...
