"""One request's tokens, state, block table, counters and deadline (no torch, no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tokenfleet_worker.batch import SamplingParams


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """A prompt and the tokens generated after it, plus what the scheduler and block manager track.

    `num_computed_tokens` counts tokens whose keys and values are in the cache; the scheduler hands the
    runner the next chunk after them. A preempted sequence drops its blocks and recomputes from zero.
    """

    seq_id: int
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams
    arrival_time: float
    deadline: float | None = None  # absolute time on the engine's clock; None means no deadline
    index: int = 0  # which choice of the request this sequence produces (n > 1, or several prompts)
    token_ids: list[int] = field(default_factory=list)
    status: SeqStatus = SeqStatus.WAITING
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # chained hashes of the full blocks committed
    finish_reason: str | None = None
    num_cached_tokens: int = 0  # prompt tokens served from the prefix cache at the first admission
    num_preemptions: int = 0
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids) :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SeqStatus.FINISHED

    @property
    def is_prefilling(self) -> bool:
        """True while more than the newest token is still to be computed (prompt or recompute)."""
        return self.num_uncomputed_tokens > 1

    def is_expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def reset_for_recompute(self) -> None:
        """Forget the cached state after preemption; the tokens so far are recomputed on readmission."""
        self.num_computed_tokens = 0
        self.block_table = []
        self.block_hashes = []
        self.status = SeqStatus.WAITING
        self.num_preemptions += 1
