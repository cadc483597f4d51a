"""The engine: `step()` reads as schedule -> runner.execute -> postprocess.

Postprocess appends each sampled token, detokenizes incrementally and finishes a sequence on a stop
token id, end-of-sequence, a stop string, max_tokens or the context length. Nothing here does I/O or
touches a device: the runner owns the device, the async layer owns threads and queues.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from tokenfleet_worker.batch import Runner, SampledToken, SamplingParams
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.detokenizer import IncrementalDetokenizer
from tokenfleet_worker.kv_cache import BlockManager
from tokenfleet_worker.outputs import EngineObserver, EngineStats, RequestOutput, TokenLogprob
from tokenfleet_worker.scheduler import Scheduler
from tokenfleet_worker.sequence import Sequence
from tokenfleet_worker.step_budget import record_step
from tokenfleet_worker.tokenizer import TokenizerBundle

ABORT = "abort"
STOP = "stop"
LENGTH = "length"


class RequestError(ValueError):
    """The request cannot be served as asked (maps to HTTP 400)."""


def check_request(config: EngineConfig, num_prompt_tokens: int, sampling: SamplingParams) -> None:
    if num_prompt_tokens == 0:
        raise RequestError("the prompt is empty")
    if sampling.max_tokens < 1:
        raise RequestError("max_tokens must be at least 1")
    total = num_prompt_tokens + sampling.max_tokens
    if total > config.max_model_len:
        raise RequestError(
            f"This model's maximum context length is {config.max_model_len} tokens. However, you "
            f"requested {total} tokens ({num_prompt_tokens} in the prompt, {sampling.max_tokens} for "
            "the completion). Please reduce the prompt or max_tokens."
        )


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        runner: Runner,
        tokenizer: TokenizerBundle,
        *,
        observer: EngineObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if runner.block_size != config.block_size:
            raise ValueError(
                f"runner block size {runner.block_size} != engine block size {config.block_size}"
            )
        self.config = config
        self.runner = runner
        self.tokenizer = tokenizer
        self.observer = observer
        # Called once a step's batch is chosen, before it runs: stats taken then are the step's own.
        self.on_scheduled: Callable[[], None] | None = None
        self.clock = clock
        self.block_manager = BlockManager(
            runner.num_blocks, config.block_size, enable_prefix_caching=config.enable_prefix_caching
        )
        self.scheduler = Scheduler(config, self.block_manager)
        self._seq_ids = itertools.count()
        self._seqs: dict[int, Sequence] = {}
        self._detokenizers: dict[int, IncrementalDetokenizer] = {}
        self._by_request: dict[str, list[int]] = {}
        self._num_prompt_tokens = 0
        self._num_generation_tokens = 0
        self.last_batch_size = 0  # sequences the last step ran; 0 when nothing could be scheduled

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: SamplingParams,
        *,
        index: int = 0,
        arrival_time: float | None = None,
        deadline: float | None = None,
    ) -> None:
        check_request(self.config, len(prompt_token_ids), sampling)
        seq = Sequence(
            seq_id=next(self._seq_ids),
            request_id=request_id,
            prompt_token_ids=tuple(prompt_token_ids),
            sampling=sampling,
            arrival_time=self.clock() if arrival_time is None else arrival_time,
            deadline=deadline,
            index=index,
        )
        self._seqs[seq.seq_id] = seq
        self._detokenizers[seq.seq_id] = IncrementalDetokenizer(
            self.tokenizer.tokenizer, seq.prompt_token_ids, stop=sampling.stop
        )
        self._by_request.setdefault(request_id, []).append(seq.seq_id)
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> list[RequestOutput]:
        """Finish every sequence of the request with reason "abort"; unknown ids are ignored."""
        outputs = []
        for seq_id in list(self._by_request.get(request_id, ())):
            seq = self._seqs[seq_id]
            self.scheduler.finish(seq, ABORT)
            outputs.append(self._finish_output(seq, ""))
        return outputs

    def abort_all(self) -> list[RequestOutput]:
        return [output for request_id in list(self._by_request) for output in self.abort(request_id)]

    def has_unfinished(self) -> bool:
        return bool(self._seqs)

    def step(self) -> list[RequestOutput]:
        scheduled = self.scheduler.schedule(self.clock())
        outputs = [self._finish_output(seq, "") for seq in scheduled.expired]
        self.last_batch_size = len(scheduled.batch.seqs)
        if not scheduled.batch.seqs:
            return outputs
        if self.on_scheduled is not None:
            self.on_scheduled()
        started = self.clock()
        sampled = self.runner.execute(scheduled.batch)
        self.scheduler.on_step_done(scheduled)
        now = self.clock()
        record_step(
            self.scheduler.step_times,
            scheduled.batch.num_tokens,
            scheduled.num_decodes,
            now - started,
            self.config.decode_step_target_s,
        )
        if self.observer is not None:
            self.observer.observe_step(len(scheduled.batch.seqs), scheduled.batch.num_tokens)
        needing = [
            s for s, item in zip(scheduled.scheduled, scheduled.batch.seqs, strict=True) if item.needs_sample
        ]
        if len(sampled) != len(needing):
            raise RuntimeError(f"runner returned {len(sampled)} tokens for {len(needing)} sequences")
        for seq, token in zip(needing, sampled, strict=True):
            outputs.append(self._postprocess(seq, token, now))
        return outputs

    def stats(self) -> EngineStats:
        return EngineStats(
            num_waiting=len(self.scheduler.waiting),
            num_running=len(self.scheduler.running),
            num_total_blocks=self.block_manager.num_blocks,
            num_free_blocks=self.block_manager.num_free_blocks,
            block_size=self.config.block_size,
            has_prefix_cache=self.config.enable_prefix_caching,
            tokens_in_flight=sum(s.num_tokens for s in self.scheduler.running),
            prefill_tokens_waiting=self.scheduler.prefill_tokens_waiting(),
            max_num_seqs=self.config.max_num_seqs,
            num_prompt_tokens=self._num_prompt_tokens,
            num_generation_tokens=self._num_generation_tokens,
            num_preemptions=self.scheduler.num_preemptions,
            num_prefix_queries=self.block_manager.num_prefix_queries,
            num_prefix_hits=self.block_manager.num_prefix_hits,
        )

    # -- postprocess -----------------------------------------------------------------------------

    def _postprocess(self, seq: Sequence, token: SampledToken, now: float) -> RequestOutput:
        if token.seq_id != seq.seq_id:
            raise RuntimeError(f"runner answered seq {token.seq_id} where {seq.seq_id} was expected")
        self._record_timing(seq, now)
        seq.token_ids.append(token.token_id)
        self._num_generation_tokens += 1
        sampling = seq.sampling
        reason: str | None = None
        text = ""
        if token.token_id in sampling.stop_token_ids or (
            not sampling.ignore_eos and token.token_id in self.tokenizer.eos_token_ids
        ):
            reason = STOP  # the stop token ends the text but is not part of it
        else:
            delta = self._detokenizers[seq.seq_id].add_tokens([token.token_id])
            text = delta.text
            if delta.stop_string is not None:
                reason = STOP
        if reason is None and (
            seq.num_output_tokens >= sampling.max_tokens or seq.num_tokens >= self.config.max_model_len
        ):
            reason = LENGTH
        logprobs = self._logprobs(token) if sampling.logprobs is not None else ()
        if reason is None:
            return self._output(seq, text, (token.token_id,), logprobs)
        self.scheduler.finish(seq, reason)
        return self._finish_output(seq, text, (token.token_id,), logprobs)

    def _record_timing(self, seq: Sequence, now: float) -> None:
        if seq.first_token_time is None:
            seq.first_token_time = now
            self._num_prompt_tokens += seq.num_prompt_tokens
            if self.observer is not None:
                queue_s = (seq.first_scheduled_time or now) - seq.arrival_time
                self.observer.observe_first_token(now - seq.arrival_time, queue_s)
        elif self.observer is not None and seq.last_token_time is not None:
            self.observer.observe_token_gap(now - seq.last_token_time)
        seq.last_token_time = now

    def _logprobs(self, token: SampledToken) -> tuple[TokenLogprob, ...]:
        decode = self.tokenizer.decode
        top = tuple((decode([tid], skip_special_tokens=False), lp) for tid, lp in token.top_logprobs)
        logprob = token.logprob if token.logprob is not None else 0.0
        piece = decode([token.token_id], skip_special_tokens=False)
        return (TokenLogprob(token.token_id, piece, logprob, top),)

    def _output(
        self,
        seq: Sequence,
        text: str,
        token_ids: tuple[int, ...] = (),
        logprobs: tuple[TokenLogprob, ...] = (),
    ) -> RequestOutput:
        return RequestOutput(
            request_id=seq.request_id,
            index=seq.index,
            text=text,
            token_ids=token_ids,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            num_cached_tokens=seq.num_cached_tokens,
            logprobs=logprobs,
        )

    def _finish_output(
        self,
        seq: Sequence,
        text: str,
        token_ids: tuple[int, ...] = (),
        logprobs: tuple[TokenLogprob, ...] = (),
    ) -> RequestOutput:
        """Flush held-back text, forget the sequence and report its end."""
        detokenizer = self._detokenizers.pop(seq.seq_id)
        if seq.finish_reason != ABORT:
            text += detokenizer.flush()
        del self._seqs[seq.seq_id]
        siblings = self._by_request[seq.request_id]
        siblings.remove(seq.seq_id)
        if not siblings:
            del self._by_request[seq.request_id]
        if self.observer is not None and seq.finish_reason is not None:
            now = self.clock()
            tpot = None
            if seq.first_token_time is not None and seq.num_output_tokens > 1:
                tpot = (now - seq.first_token_time) / (seq.num_output_tokens - 1)
            self.observer.observe_finished(seq.finish_reason, now - seq.arrival_time, tpot)
        return self._output(seq, text, token_ids, logprobs)
