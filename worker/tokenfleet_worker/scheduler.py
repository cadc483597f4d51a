"""Continuous batching: which sequences compute which tokens this step.

Each step spends a token budget (`max_batched_tokens`) over at most `max_num_seqs` sequences:
1. running sequences that decode (one token each), oldest first; when a decode needs a block and none
   is free, the newest running sequence is preempted (its blocks freed, recomputed later);
2. running sequences still in prefill get the next chunk of their prompt from what budget is left, so
   a long prompt is split over steps while the decodes keep going every step; with a decode-step
   target, a step that carries decodes leaves prefill only the tokens that fit it (step_budget.py);
3. waiting sequences are admitted in queue order while the budget, the sequence limit and the free
   blocks allow; the queue head is never overtaken, and nothing is admitted in a step that
   preempted. The queue is kept in the config's admission order (admission.py: first come first
   served, or shortest prompt first with aging); preempted sequences go back to its head.
Sequences past their deadline finish with reason "deadline", waiting or running.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tokenfleet_worker.admission import admission_key, enqueue
from tokenfleet_worker.batch import ScheduledSeq, StepBatch
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.kv_cache import BlockManager
from tokenfleet_worker.sequence import SeqStatus, Sequence
from tokenfleet_worker.step_budget import StepTimeModel, prefill_budget

DEADLINE = "deadline"


@dataclass(frozen=True)
class SchedulerOutput:
    batch: StepBatch
    scheduled: tuple[Sequence, ...]  # in batch order
    expired: tuple[Sequence, ...]  # finished with reason "deadline" this step
    num_preempted: int
    num_decodes: int = 0  # sequences that computed one decode token this step


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self.step_times = StepTimeModel()  # fed by the engine with each step's tokens and seconds
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # admission order: oldest first
        self.num_preemptions = 0

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def prefill_tokens_waiting(self) -> int:
        """Prompt (or recompute) tokens still to prefill: the work ahead of a new request's first token.

        Waiting prompts count whole: their prefix-cache hit is known only at admission, and
        looking it up for every report would hash each queued prompt again."""
        waiting = sum(seq.num_uncomputed_tokens for seq in self.waiting)
        return waiting + sum(seq.num_uncomputed_tokens for seq in self.running if seq.is_prefilling)

    def add(self, seq: Sequence) -> None:
        seq.status = SeqStatus.WAITING
        policy = self.config.scheduling_policy
        enqueue(self.waiting, seq, lambda s: admission_key(policy, s.arrival_time, s.num_prompt_tokens))

    def finish(self, seq: Sequence, reason: str) -> None:
        """Stop a sequence (finished or aborted) and give its blocks back."""
        if seq.status is SeqStatus.RUNNING:
            self.running.remove(seq)
            self.block_manager.free(seq)
        elif seq.status is SeqStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = reason

    def schedule(self, now: float) -> SchedulerOutput:
        expired = self._expire(now)
        budget = self.config.max_batched_tokens
        chunks: dict[int, int] = {}  # seq_id -> tokens scheduled this step
        num_preempted = 0

        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            if seq.is_prefilling:
                index += 1
                continue
            while not self.block_manager.can_append(seq):
                victim = self.running[-1]
                self._preempt(victim)
                num_preempted += 1
                if victim is seq:
                    break
            if seq.status is not SeqStatus.RUNNING:
                break  # it preempted itself; everything after it is gone too
            self.block_manager.append_slot(seq)
            chunks[seq.seq_id] = 1
            budget -= 1
            index += 1

        config = self.config
        num_decodes = len(chunks)
        budget = min(
            budget,
            prefill_budget(
                config.max_batched_tokens, num_decodes, config.decode_step_target_s, self.step_times
            ),
        )
        for seq in self.running:
            if budget <= 0:
                break
            if seq.is_prefilling and seq.seq_id not in chunks:
                take = min(seq.num_uncomputed_tokens, budget)
                chunks[seq.seq_id] = take
                budget -= take

        while self.waiting and budget > 0 and num_preempted == 0:
            if len(self.running) >= self.config.max_num_seqs:
                break
            seq = self.waiting[0]
            if not self.block_manager.can_allocate(seq):
                break
            self.waiting.popleft()
            self.block_manager.allocate(seq)
            seq.status = SeqStatus.RUNNING
            if seq.first_scheduled_time is None:
                seq.first_scheduled_time = now
                seq.num_cached_tokens = seq.num_computed_tokens
            self.running.append(seq)
            take = min(seq.num_uncomputed_tokens, budget)
            chunks[seq.seq_id] = take
            budget -= take

        scheduled = tuple(s for s in self.running if s.seq_id in chunks)
        batch = StepBatch(tuple(self._to_scheduled(s, chunks[s.seq_id]) for s in scheduled))
        self.num_preemptions += num_preempted
        return SchedulerOutput(batch, scheduled, tuple(expired), num_preempted, num_decodes)

    def on_step_done(self, output: SchedulerOutput) -> None:
        """Advance computed counts after the runner ran the batch; register the newly full blocks."""
        for seq, item in zip(output.scheduled, output.batch.seqs, strict=True):
            seq.num_computed_tokens = item.start_pos + len(item.token_ids)
            self.block_manager.commit_computed(seq)

    def _to_scheduled(self, seq: Sequence, take: int) -> ScheduledSeq:
        start = seq.num_computed_tokens
        return ScheduledSeq(
            seq_id=seq.seq_id,
            token_ids=tuple(seq.token_ids[start : start + take]),
            start_pos=start,
            block_table=tuple(seq.block_table),
            needs_sample=start + take == seq.num_tokens,
            sampling=seq.sampling,
            num_generated=seq.num_output_tokens,
        )

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.reset_for_recompute()
        self.waiting.appendleft(seq)

    def _expire(self, now: float) -> list[Sequence]:
        expired = [s for s in (*self.running, *self.waiting) if s.is_expired(now)]
        for seq in expired:
            self.finish(seq, DEADLINE)
        return expired
