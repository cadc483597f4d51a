"""A discrete-event model of a worker fleet behind the router's real routing code.

Each simulated worker runs engine steps like the real scheduler: up to `max_num_seqs` running
sequences, one decode token each per step, plus chunked prefill of the uncached part of waiting
prompts within `max_batched_tokens`; a step takes `base_s + per_token_s * tokens`. Its prefix
cache is an LRU of trace blocks (`hash_ids`, 512 tokens each in the Mooncake trace), so a prompt
whose leading blocks are cached skips their prefill. The router side is the real thing: a
`LoadView` fed with the workers' reports every `poll_s` and the router's own in-flight counts, a
`Strategy` choosing per request, and requests held (then refused after `hold_timeout_s`) when
every worker is saturated. Time is simulated; nothing sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

from tokenfleet_common.load_report import LoadReport
from tokenfleet_devkit.sim.prefix_cache import PrefixCache
from tokenfleet_devkit.traces import TraceRecord
from tokenfleet_router.load_view import LoadView, SaturationLimits
from tokenfleet_router.strategies import build_strategy
from tokenfleet_router.types import Endpoint, RequestInfo

TRACE_BLOCK_TOKENS = 512  # Mooncake's hash_ids cover 512-token blocks


@dataclass(frozen=True)
class FleetModel:
    num_workers: int = 8
    max_num_seqs: int = 64
    max_batched_tokens: int = 8192
    base_s: float = 0.012  # per engine step
    per_token_s: float = 6e-5  # per token computed in a step (~16k prefill tokens/s)
    # ~2M tokens of prefix cache per worker: GPU KV plus a host-memory tier, as Mooncake serves
    # with (an 80 GB GPU alone holds ~900 blocks of an 8B model; try --cache-blocks 900).
    cache_blocks: int = 4000
    poll_s: float = 0.25
    hold_timeout_s: float = 10.0

    def request_seconds(self, prompt_tokens: float, output_tokens: float) -> float:
        """Engine time one request costs at full batch, without any prefix cache."""
        return (
            self.per_token_s * (prompt_tokens + output_tokens)
            + self.base_s * output_tokens / self.max_num_seqs
        )

    def capacity_rps(self, records: list[TraceRecord]) -> float:
        mean = sum(self.request_seconds(r.prompt_tokens, r.output_tokens) for r in records) / len(records)
        return self.num_workers / mean


@dataclass
class SimRequest:
    record: TraceRecord
    arrival_s: float
    worker: str = ""
    expected_prefill: int = 0  # what the router counts as this request's queued prefill
    prefill_left: int = 0
    generated: int = 0
    cached_tokens: int = 0
    first_token_s: float | None = None
    finish_s: float | None = None
    is_rejected: bool = False

    @property
    def num_tokens(self) -> int:
        return self.record.prompt_tokens + self.record.output_tokens


@dataclass
class SimWorker:
    name: str
    model: FleetModel
    waiting: deque[SimRequest] = field(default_factory=deque)
    running: list[SimRequest] = field(default_factory=list)
    is_busy: bool = False
    tokens_computed: int = 0
    plan: list[tuple[SimRequest, int]] = field(default_factory=list)  # (request, tokens) of the current step
    first_tokens: list[SimRequest] = field(default_factory=list)  # those the current step starts

    def __post_init__(self) -> None:
        self.cache = PrefixCache(self.model.cache_blocks)

    def _admit_waiting(self) -> None:
        while self.waiting and len(self.running) < self.model.max_num_seqs:
            request = self.waiting.popleft()
            prompt = request.record.prompt_tokens
            cached = min(prompt - 1, self.cache.match(request.record.hash_ids) * TRACE_BLOCK_TOKENS)
            request.cached_tokens = max(0, cached)
            request.prefill_left = prompt - request.cached_tokens
            self.running.append(request)

    def step_seconds(self) -> float | None:
        """Plan the next step into `plan`; its duration, or None when idle."""
        self._admit_waiting()
        budget = self.model.max_batched_tokens
        plan: list[tuple[SimRequest, int]] = []
        for request in self.running:
            if request.prefill_left == 0:
                plan.append((request, 1))
                budget -= 1
        for request in self.running:
            if request.prefill_left > 0 and budget > 0:
                chunk = min(request.prefill_left, budget)
                plan.append((request, chunk))
                budget -= chunk
        self.plan = plan
        tokens = sum(n for _, n in plan)
        if tokens == 0:
            return None
        self.tokens_computed += tokens
        return self.model.base_s + self.model.per_token_s * tokens

    def finish_step(self, now: float) -> list[SimRequest]:
        finished: list[SimRequest] = []
        self.first_tokens = []
        for request, tokens in self.plan:
            if request.prefill_left > 0:
                request.prefill_left -= tokens
                if request.prefill_left > 0:
                    continue
                self.cache.remember(request.record.hash_ids)
            request.generated += 1
            if request.first_token_s is None:
                request.first_token_s = now
                self.first_tokens.append(request)
            if request.generated >= request.record.output_tokens:
                request.finish_s = now
                finished.append(request)
        if finished:
            done = {id(r) for r in finished}
            self.running = [r for r in self.running if id(r) not in done]
        return finished

    def report(self) -> LoadReport:
        used = sum(
            math.ceil((r.record.prompt_tokens + r.generated) / TRACE_BLOCK_TOKENS) for r in self.running
        )
        total = self.model.cache_blocks
        return LoadReport(
            waiting=len(self.waiting),
            running=len(self.running),
            kv_cache_usage=min(1.0, used / total),
            free_blocks=max(0, total - used),
            total_blocks=total,
            tokens_in_flight=sum(r.record.prompt_tokens + r.generated for r in self.running),
            max_num_seqs=self.model.max_num_seqs,
            prefill_tokens_waiting=self.prefill_tokens_waiting(),
            prefix_cache_tokens=total * TRACE_BLOCK_TOKENS,
        )

    def prefill_tokens_waiting(self) -> int:
        """Prompt tokens left to prefill, counted as the engine does: queued prompts whole (their
        cache hit is known at admission), admitted ones their uncached rest."""
        left = sum(r.prefill_left for r in self.running)
        return left + sum(r.record.prompt_tokens for r in self.waiting)


@dataclass(frozen=True)
class FleetRun:
    requests: list[SimRequest]
    tokens_by_worker: dict[str, int]
    requests_by_worker: dict[str, int]


def simulate(records: list[TraceRecord], strategy_name: str, model: FleetModel, seed: int = 0) -> FleetRun:
    """Replay `records` (already rate-scaled) through the named strategy.

    Every request ends either served or refused (held past `hold_timeout_s`)."""
    workers = {f"w{i}": SimWorker(f"w{i}", model) for i in range(model.num_workers)}
    view = LoadView(SaturationLimits(stale_after_s=max(2.0, 8 * model.poll_s)))
    view.set_endpoints([Endpoint(name, f"http://{name}") for name in workers])
    strategy = build_strategy(strategy_name, rng=random.Random(seed))
    requests = [SimRequest(r, r.arrival_s) for r in records]
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    for request in requests:
        heapq.heappush(events, (request.arrival_s, next(order), "arrive", request))
    held: deque[SimRequest] = deque()
    served_by: dict[str, int] = dict.fromkeys(workers, 0)

    def poll(now: float) -> None:
        for name, worker in workers.items():
            view.record_report(name, worker.report(), now)

    def start_step(worker: SimWorker, now: float) -> None:
        duration = worker.step_seconds()
        worker.is_busy = duration is not None
        if duration is not None:
            heapq.heappush(events, (now + duration, next(order), "step", worker))

    def try_route(request: SimRequest, now: float) -> bool:
        info = RequestInfo(
            block_hashes=request.record.hash_ids,
            num_prompt_tokens=request.record.prompt_tokens,
            max_tokens=request.record.output_tokens,
        )
        route = strategy.route(info, view.snapshot(now))
        if route is None:
            return False
        picked = route.worker
        request.worker = picked.name
        request.expected_prefill = route.prefill_tokens
        served_by[picked.name] += 1
        view.begin(picked.name, request.num_tokens, route.prefill_tokens, now)
        worker = workers[picked.name]
        worker.waiting.append(request)
        if not worker.is_busy:
            start_step(worker, now)
        return True

    def drain_held(now: float) -> None:
        while held:
            if now - held[0].arrival_s > model.hold_timeout_s:
                held.popleft().is_rejected = True
            elif try_route(held[0], now):
                held.popleft()
            else:
                break

    poll(0.0)
    next_poll = model.poll_s
    while events:
        now, _, kind, payload = heapq.heappop(events)
        while next_poll <= now:
            poll(next_poll)
            drain_held(next_poll)
            next_poll += model.poll_s
        if kind == "arrive":
            assert isinstance(payload, SimRequest)
            if held or not try_route(payload, now):
                held.append(payload)
        elif kind == "step":
            assert isinstance(payload, SimWorker)
            finished = payload.finish_step(now)
            for request in payload.first_tokens:  # what a streaming client sees: the first event
                view.first_token(payload.name, request.expected_prefill)
            for request in finished:
                view.end(payload.name, request.num_tokens)
            start_step(payload, now)
            drain_held(now)
        if not events and held:  # only held requests left: let time pass to their deadline
            heapq.heappush(events, (now + model.poll_s, next(order), "tick", None))
    tokens = {name: w.tokens_computed for name, w in workers.items()}
    return FleetRun(requests, tokens, served_by)


def ideal_cached_tokens(records: list[TraceRecord]) -> list[int]:
    """Per request, the prompt tokens an unbounded prefix cache shared by the whole fleet would skip."""
    seen: set[int] = set()
    cached: list[int] = []
    for record in records:
        matched = 0
        for block in record.hash_ids:
            if block not in seen:
                break
            matched += 1
        cached.append(max(0, min(record.prompt_tokens - 1, matched * TRACE_BLOCK_TOKENS)))
        seen.update(record.hash_ids)
    return cached


def ideal_hit_tokens(records: list[TraceRecord]) -> int:
    """Prompt tokens an unbounded prefix cache shared by the whole fleet would skip."""
    return sum(ideal_cached_tokens(records))


def ttft_floor_seconds(records: list[TraceRecord], model: FleetModel) -> list[float]:
    """Per request, its TTFT alone on an idle worker that holds the ideal cache.

    No router can beat it: the p95 of these bounds how far any strategy's p95 can fall."""
    floors: list[float] = []
    for record, cached in zip(records, ideal_cached_tokens(records), strict=True):
        uncached = record.prompt_tokens - cached
        steps = math.ceil(uncached / model.max_batched_tokens)
        floors.append(steps * model.base_s + uncached * model.per_token_s)
    return floors
