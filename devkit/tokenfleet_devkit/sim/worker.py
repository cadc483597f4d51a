"""One simulated worker: continuous batching with chunked prefill and a KV cache counted in tokens.

Each step computes one token for every decoding sequence plus prefill chunks (FIFO) up to
`max_batched_tokens`. A request is admitted from the waiting queue (kept in the engine's admission
order: first come first served, or shortest prompt first with aging, tokenfleet_worker.admission) when a
batch slot is free and its prompt + output tokens fit the unreserved KV cache, so nothing is ever
preempted. With prefix caching, leading prompt blocks already in this worker's cache are not
prefilled again.

Speed: while no prefill is pending and nothing can be admitted, the batch cannot change until its
shortest request finishes, so those decode steps run as one *span* (one event, step time taken at
the span's mean context). Per-request state is touched only when it is admitted, produces its first
token or finishes; decoding progress is one shared step counter. A new arrival that can be admitted
cuts the span at the end of the step in progress.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

from tokenfleet_devkit.sim.events import EventLoop
from tokenfleet_devkit.sim.perf_model import PerfModel
from tokenfleet_devkit.sim.prefix_cache import PrefixCache
from tokenfleet_devkit.sim.request import REJECT_DRAIN_TIMEOUT, REJECT_TOO_LARGE, SimRequest
from tokenfleet_worker.admission import FCFS, admission_key, check_policy, enqueue
from tokenfleet_worker.step_budget import StepTimeModel, prefill_budget, record_step

MAX_SPAN_STEPS = 256  # keeps metrics and context growth reasonably fresh during long decode spans


@dataclass(frozen=True)
class EngineConfig:
    max_num_seqs: int = 256
    # 2048 rather than the engine's 8192: a full 8192-token chunk makes every co-scheduled decode step
    # take ~0.27 s on an H100, which no TPOT target survives; smaller chunks are the usual latency setting.
    max_batched_tokens: int = 2048
    prefix_caching: bool = True
    prefix_block_tokens: int = 512  # the trace's hash-id granularity
    # spec.engine.decodeStepTargetMs in seconds: the worker's own step budget, learned from its steps.
    decode_step_target_s: float | None = None
    scheduling_policy: str = FCFS  # spec.engine.schedulingPolicy

    def __post_init__(self) -> None:
        check_policy(self.scheduling_policy)


class WorkerEvents:
    """What the fleet wants to hear from a worker; override the methods it needs."""

    def on_first_token(self, request: SimRequest, now: float) -> None: ...

    def on_done(self, request: SimRequest, now: float) -> None: ...

    def on_step_end(self, worker: SimWorker, now: float) -> None: ...


class SimWorker:
    def __init__(
        self,
        name: str,
        variant: str,
        perf: PerfModel,
        engine: EngineConfig,
        loop: EventLoop,
        events: WorkerEvents,
        created_at: float,
    ) -> None:
        self.name = name
        self.variant = variant
        self.perf = perf
        self.engine = engine
        self.loop = loop
        self.events = events
        self.created_at = created_at
        self.ready_at: float | None = None
        self.removed_at: float | None = None
        self.drained_at: float | None = None  # told to drain: it leaves the router, as a deleted pod does
        self.is_draining = False
        self.capacity = perf.kv_capacity_tokens
        self.waiting: deque[SimRequest] = deque()
        self.prefilling: deque[SimRequest] = deque()
        self._decoding: list[tuple[int, int, SimRequest]] = []  # (finish_step, id, request)
        self.decode_steps = 0
        self._ctx_base = 0  # sum over decoding of prompt + 1 - entry step; context = base + n * steps
        self._prefill_done = 0  # prompt tokens in the KV cache of requests still prefilling
        self._prefill_prompts = 0  # full prompts of requests still prefilling
        self._prefill_left_total = 0  # prompt tokens still to compute over the prefilling requests
        self.kv_reserved = 0
        self.num_in_flight = 0  # requests routed here and not done
        self.prompt_tokens_done = 0  # whole prompts at their first token, hits too: the real counter
        self.generation_tokens_done = 0
        self._prefix_cache = PrefixCache(self.capacity // engine.prefix_block_tokens)
        self._busy = False
        self._generation = 0  # bumps to cancel a scheduled span end
        self._span: tuple[float, float, int] | None = None  # (start, step seconds, steps)
        self.step_times = StepTimeModel()  # what the real engine learns its decode-step budget from

    # --- what the router and the metrics read -------------------------------------------------
    @property
    def num_decoding(self) -> int:
        return len(self._decoding)

    @property
    def num_running(self) -> int:
        return len(self.prefilling) + len(self._decoding)

    @property
    def decode_context(self) -> int:
        return self._ctx_base + len(self._decoding) * self.decode_steps

    @property
    def kv_used(self) -> int:
        return self._prefill_done + self.decode_context

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.kv_used / self.capacity) if self.capacity else 0.0

    @property
    def prefill_tokens_waiting(self) -> int:
        """Prompt tokens still to compute, queued prompts counted whole (the worker's /load report)."""
        return sum(r.prompt_tokens for r in self.waiting) + self._prefill_left_total

    @property
    def tokens_in_flight(self) -> int:
        return self._prefill_prompts + self.decode_context

    @property
    def is_empty(self) -> bool:
        return not self.waiting and not self.prefilling and not self._decoding

    def fits_ever(self, request: SimRequest) -> bool:
        return request.prompt_tokens + request.output_tokens <= self.capacity

    # --- requests in ------------------------------------------------------------------------------
    def submit(self, request: SimRequest, now: float) -> None:
        request.worker = self.name
        self.num_in_flight += 1
        if not self.fits_ever(request):
            self._finish(request, now, REJECT_TOO_LARGE)
            return
        policy = self.engine.scheduling_policy
        enqueue(self.waiting, request, lambda r: admission_key(policy, r.arrival, r.prompt_tokens))
        if not self._busy:
            self._schedule_next(now)
        elif self._span is not None and self._can_admit(request) and len(self.waiting) == 1:
            self._cut_span(now)

    def _can_admit(self, request: SimRequest) -> bool:
        return (
            self.num_running < self.engine.max_num_seqs
            and self.kv_reserved + request.prompt_tokens + request.output_tokens <= self.capacity
        )

    def _prefix_hits(self, request: SimRequest) -> int:
        if not self.engine.prefix_caching or not request.hash_ids:
            return 0
        hits = self._prefix_cache.match(request.hash_ids)
        self._prefix_cache.remember(request.hash_ids)
        # The last prompt token is always computed, to produce the first output token.
        return min(hits * self.engine.prefix_block_tokens, request.prompt_tokens - 1)

    def _admit(self) -> None:
        # As in vLLM's scheduler, a request leaves the waiting queue only when this step's token budget
        # reaches it; requests behind a long prefill keep waiting (and count as queue depth).
        budget = self._prefill_budget()
        while self.waiting and self._prefill_left_total < budget and self._can_admit(self.waiting[0]):
            request = self.waiting.popleft()
            hits = self._prefix_hits(request)
            request.prefill_left = request.prompt_tokens - hits
            self._prefill_left_total += request.prefill_left
            self._prefill_done += hits
            self._prefill_prompts += request.prompt_tokens
            self.kv_reserved += request.prompt_tokens + request.output_tokens
            self.prefilling.append(request)

    # --- stepping ---------------------------------------------------------------------------------
    def _schedule_next(self, now: float) -> None:
        self._admit()
        self._span = None
        if self.prefilling:
            self._busy = True
            self._mixed_step(now)
        elif self._decoding:
            self._busy = True
            self._start_span(now)
        else:
            self._busy = False

    def _prefill_budget(self) -> int:
        """Prompt tokens the next step may compute, as the real scheduler decides it."""
        engine = self.engine
        num_decode = len(self._decoding)
        return prefill_budget(
            engine.max_batched_tokens, num_decode, engine.decode_step_target_s, self.step_times
        )

    def _mixed_step(self, now: float) -> None:
        num_decode = len(self._decoding)
        budget = max(1, self._prefill_budget())
        chunks: list[tuple[SimRequest, int]] = []
        context = self.decode_context + num_decode
        for request in self.prefilling:
            if budget <= 0:
                break
            chunk = min(request.prefill_left, budget)
            budget -= chunk
            chunks.append((request, chunk))
            context += request.prompt_tokens - request.prefill_left + chunk
        num_tokens = num_decode + sum(c for _, c in chunks)
        seconds = self.perf.step_seconds(num_tokens, context)
        record_step(self.step_times, num_tokens, num_decode, seconds, self.engine.decode_step_target_s)
        self.loop.at(now + seconds, lambda t: self._end_mixed(t, num_decode, chunks))

    def _end_mixed(self, now: float, num_decode: int, chunks: list[tuple[SimRequest, int]]) -> None:
        self._advance(1, num_decode, now)
        for request, chunk in chunks:
            request.prefill_left -= chunk
            self._prefill_left_total -= chunk
            self._prefill_done += chunk
        while self.prefilling and self.prefilling[0].prefill_left == 0:
            self._start_decoding(self.prefilling.popleft(), now)
        self._after_step(now)

    def _start_decoding(self, request: SimRequest, now: float) -> None:
        self._prefill_done -= request.prompt_tokens
        self._prefill_prompts -= request.prompt_tokens
        request.first_token_time = now
        self.prompt_tokens_done += request.prompt_tokens
        self.generation_tokens_done += 1
        self.events.on_first_token(request, now)
        if request.output_tokens <= 1:
            self.kv_reserved -= request.prompt_tokens + request.output_tokens
            self._finish(request, now, None)
            return
        request.finish_step = self.decode_steps + request.output_tokens - 1
        self._ctx_base += request.prompt_tokens + 1 - self.decode_steps
        heapq.heappush(self._decoding, (request.finish_step, request.id, request))

    def _start_span(self, now: float) -> None:
        num_decode = len(self._decoding)
        steps = min(self._decoding[0][0] - self.decode_steps, MAX_SPAN_STEPS)
        mean_context = self.decode_context + num_decode * (1 + (steps - 1) / 2)
        step_seconds = self.perf.step_seconds(num_decode, int(mean_context))
        self._span = (now, step_seconds, steps)
        self._schedule_span_end(now + steps * step_seconds, steps)

    def _schedule_span_end(self, when: float, steps: int) -> None:
        self._generation += 1
        generation = self._generation
        num_decode = len(self._decoding)

        def end(t: float) -> None:
            if generation == self._generation:
                self._span = None
                self._advance(steps, num_decode, t)
                self._after_step(t)

        self.loop.at(when, end)

    def _cut_span(self, now: float) -> None:
        """End the running span after the step in progress, so a new request joins the batch."""
        assert self._span is not None
        start, step_seconds, steps = self._span
        done = min(steps, math.floor((now - start) / step_seconds) + 1)
        if done < steps:
            self._span = (start, step_seconds, done)
            self._schedule_span_end(start + done * step_seconds, done)

    def _advance(self, steps: int, num_decode: int, now: float) -> None:
        self.decode_steps += steps
        self.generation_tokens_done += steps * num_decode
        decoding = self._decoding
        while decoding and decoding[0][0] <= self.decode_steps:
            _, _, request = heapq.heappop(decoding)
            entry = request.finish_step - (request.output_tokens - 1)
            self._ctx_base -= request.prompt_tokens + 1 - entry
            self.kv_reserved -= request.prompt_tokens + request.output_tokens
            self._finish(request, now, None)

    def _after_step(self, now: float) -> None:
        self._schedule_next(now)
        self.events.on_step_end(self, now)

    def _finish(self, request: SimRequest, now: float, reason: str | None) -> None:
        if reason is None:
            request.finish_time = now
        else:
            request.reject_reason = reason
        self.num_in_flight -= 1
        self.events.on_done(request, now)

    # --- end of life ------------------------------------------------------------------------------
    def kill(self, now: float) -> None:
        """The drain deadline passed: whatever is still here is lost."""
        self._generation += 1
        pending = list(self.waiting) + list(self.prefilling) + [r for _, _, r in self._decoding]
        self.waiting.clear()
        self.prefilling.clear()
        self._prefill_left_total = 0
        self._decoding.clear()
        self._busy = False
        self._span = None
        for request in pending:
            self._finish(request, now, REJECT_DRAIN_TIMEOUT)
