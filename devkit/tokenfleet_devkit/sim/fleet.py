"""The simulated fleet: arrivals -> router -> workers, and an autoscaler ticking every interval.

Replica lifecycle: created (billed from here) -> ready after the variant's cold start (pod scheduling +
model load) -> draining on scale-down (no new requests; in-flight work finishes, or is lost at the drain
deadline) -> removed. Scale-down removes replicas still starting first, then the ready ones with the
least work in flight, as the operator's pod-deletion-cost annotation does.

Requests no worker can take wait at the router under the router's own admission rule (held, then 429 or
503); every arrived request ends completed or rejected with a reason.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tokenfleet_devkit.sim.adapters import FleetSnapshot, RouterModel, VariantSnapshot, admission
from tokenfleet_devkit.sim.events import EventLoop
from tokenfleet_devkit.sim.observation import Autoscaler, Observation
from tokenfleet_devkit.sim.perf_model import PerfModel
from tokenfleet_devkit.sim.request import REJECT_NO_CAPACITY, REJECT_OVERLOADED, REJECT_UNFINISHED, SimRequest
from tokenfleet_devkit.sim.worker import EngineConfig, SimWorker, WorkerEvents


@dataclass(frozen=True)
class VariantSetup:
    name: str
    perf: PerfModel
    hourly_cost: float
    cold_start_s: float = 45.0  # pod scheduling (~10 s) + model load and warm-up (~35 s)
    max_replicas: int = 64
    # Measured cold starts differ pod to pod: when given, the k-th replica added takes the k-th (cycling).
    cold_starts_s: tuple[float, ...] = ()
    # Declared to the policy as spec.accelerators[].tokensPerSecond (what a benchmark on it would say).
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class SimConfig:
    variants: tuple[VariantSetup, ...]
    engine: EngineConfig = field(default_factory=EngineConfig)
    interval_s: float = 5.0
    strategy: str = "least-load"
    seed: int = 0
    drain_timeout_s: float = 300.0
    admission: admission.AdmissionSettings = field(default_factory=admission.AdmissionSettings)
    tail_s: float = 600.0  # keep running after the last arrival so answers in flight can finish
    # When the first tick comes (default: one interval in). A real operator's ticks fall anywhere
    # against the arrivals; runs at several phases show what that alone changes.
    first_tick_s: float | None = None

    def variant(self, name: str) -> VariantSetup:
        return next(v for v in self.variants if v.name == name)


@dataclass(frozen=True)
class TimelinePoint:
    time: float
    ready: dict[str, int]
    starting: dict[str, int]
    desired: dict[str, int]
    arrivals_per_s: float
    held: int


@dataclass
class SimResult:
    requests: list[SimRequest]
    timeline: list[TimelinePoint]
    workers: list[SimWorker]
    horizon_s: float
    scale_events: int
    num_events: int


class Simulation(WorkerEvents):
    def __init__(
        self,
        config: SimConfig,
        autoscaler: Autoscaler,
        requests: Sequence[SimRequest],
        initial: Mapping[str, int],
    ) -> None:
        self.config = config
        self.autoscaler = autoscaler
        self.requests = sorted(requests, key=lambda r: (r.arrival, r.id))
        self.loop = EventLoop()
        self.router = RouterModel(config.strategy, config.seed)
        self.workers: list[SimWorker] = []
        self.live: list[SimWorker] = []  # not removed
        self.held: deque[tuple[SimRequest, admission.Ticket | None]] = deque()
        self.timeline: list[TimelinePoint] = []
        self.scale_events = 0
        self._num_created = 0
        self._num_added: dict[str, int] = {}  # replicas added by scaling, by variant
        self._arrivals_in_interval = 0
        self._dispatched_in_interval = 0
        self._ttfts_in_interval: list[float] = []
        self._last_counters: dict[str, tuple[int, int]] = {}
        self._next_arrival = 0
        self._initial = dict(initial)
        self._end = 0.0

    # --- replicas -----------------------------------------------------------------------------------
    def _create(self, variant: str, now: float, ready_at_once: bool) -> None:
        setup = self.config.variant(variant)
        self._num_created += 1
        worker = SimWorker(
            f"{variant}-{self._num_created}", variant, setup.perf, self.config.engine, self.loop, self, now
        )
        self.workers.append(worker)
        self.live.append(worker)
        self.loop.at(now + self._cold_start(setup, ready_at_once), lambda t: self._on_ready(worker, t))

    def _cold_start(self, setup: VariantSetup, ready_at_once: bool) -> float:
        if ready_at_once:
            return 0.0
        if not setup.cold_starts_s:
            return setup.cold_start_s
        k = self._num_added.get(setup.name, 0)
        self._num_added[setup.name] = k + 1
        return setup.cold_starts_s[k % len(setup.cold_starts_s)]

    def _on_ready(self, worker: SimWorker, now: float) -> None:
        if worker.is_draining or worker.removed_at is not None:
            return
        worker.ready_at = now
        self._update_router()
        self._retry_held(now)

    def _serving(self) -> list[SimWorker]:
        return [w for w in self.live if w.ready_at is not None and not w.is_draining]

    def _update_router(self) -> None:
        self.router.set_workers(self._serving())

    def _drain(self, worker: SimWorker, now: float) -> None:
        worker.is_draining = True
        worker.drained_at = now
        if worker.is_empty:
            self._remove(worker, now)
        else:
            self.loop.at(now + self.config.drain_timeout_s, lambda t: self._drain_deadline(worker, t))

    def _drain_deadline(self, worker: SimWorker, now: float) -> None:
        if worker.removed_at is None:
            worker.kill(now)
            self._remove(worker, now)

    def _remove(self, worker: SimWorker, now: float) -> None:
        worker.removed_at = now
        self.live.remove(worker)

    def _apply(self, desired: Mapping[str, int], now: float) -> None:
        changed = False
        ready_at_once = self.autoscaler.is_cold_start_free
        for setup in self.config.variants:
            want = max(0, min(int(desired.get(setup.name, 0)), setup.max_replicas))
            mine = [w for w in self.live if w.variant == setup.name and not w.is_draining]
            for _ in range(want - len(mine)):
                self._create(setup.name, now, ready_at_once)
                changed = True
            if len(mine) > want:
                # Starting replicas go first (newest first), then the least busy ready ones.
                mine.sort(key=lambda w: (w.ready_at is not None, w.num_in_flight, -w.created_at))
                for worker in mine[: len(mine) - want]:
                    self._drain(worker, now)
                changed = True
        if changed:
            self.scale_events += 1
            self._update_router()

    # --- requests -----------------------------------------------------------------------------------
    def _schedule_arrival(self) -> None:
        if self._next_arrival < len(self.requests):
            request = self.requests[self._next_arrival]
            self.loop.at(request.arrival, lambda t: self._on_arrival(request, t))

    def _on_arrival(self, request: SimRequest, now: float) -> None:
        self._next_arrival += 1
        self._schedule_arrival()
        self._arrivals_in_interval += 1
        if self.held or not self._dispatch(request, now):
            self._hold(request, now)
            self._retry_held(now)

    def _dispatch(self, request: SimRequest, now: float) -> bool:
        worker = self.router.pick(request, now)
        if worker is None:
            return False
        worker.submit(request, now)
        self._dispatched_in_interval += 1
        return True

    def _hold(self, request: SimRequest, now: float) -> None:
        num_workers = self.router.num_workers
        decision = admission.decide(None, now, num_workers, len(self.held), self.config.admission)
        if decision.verdict is admission.Verdict.HOLD:
            self.held.append((request, decision.ticket))
        else:
            self._reject(request, decision.verdict)

    @staticmethod
    def _reject(request: SimRequest, verdict: admission.Verdict) -> None:
        is_503 = verdict is admission.Verdict.NO_CAPACITY
        request.reject_reason = REJECT_NO_CAPACITY if is_503 else REJECT_OVERLOADED

    def _retry_held(self, now: float) -> None:
        while self.held and self._dispatch(self.held[0][0], now):
            self.held.popleft()

    def _expire_held(self, now: float) -> None:
        kept: deque[tuple[SimRequest, admission.Ticket | None]] = deque()
        for request, ticket in self.held:
            decision = admission.decide(ticket, now, self.router.num_workers, 0, self.config.admission)
            if decision.verdict is admission.Verdict.HOLD:
                kept.append((request, decision.ticket))
            else:
                self._reject(request, decision.verdict)
        self.held = kept

    # --- worker callbacks ---------------------------------------------------------------------------
    def on_first_token(self, request: SimRequest, now: float) -> None:
        self.router.first_token(request)
        if request.ttft is not None:
            self._ttfts_in_interval.append(request.ttft)

    def on_done(self, request: SimRequest, now: float) -> None:
        self.router.done(request)

    def on_step_end(self, worker: SimWorker, now: float) -> None:
        if worker.is_draining:
            if worker.is_empty and worker.removed_at is None:
                self._remove(worker, now)
        elif self.held and len(worker.waiting) < self.router.view.limits.max_waiting:
            self._retry_held(now)

    # --- the autoscaler's tick ------------------------------------------------------------------
    def _snapshot(self, now: float) -> FleetSnapshot:
        interval = self.config.interval_s
        variants = []
        for setup in self.config.variants:
            ready = [w for w in self._serving() if w.variant == setup.name]
            starting = sum(
                1 for w in self.live if w.variant == setup.name and w.ready_at is None and not w.is_draining
            )
            prompt_rate = gen_rate = 0.0
            for w in ready:
                before = self._last_counters.get(w.name, (w.prompt_tokens_done, w.generation_tokens_done))
                prompt_rate += (w.prompt_tokens_done - before[0]) / interval
                gen_rate += (w.generation_tokens_done - before[1]) / interval
            n = len(ready)
            variants.append(
                VariantSnapshot(
                    name=setup.name,
                    ready=n,
                    starting=starting,
                    waiting=float(sum(len(w.waiting) for w in ready)),
                    running=float(sum(w.num_running for w in ready)),
                    kv_usage=sum(w.kv_usage for w in ready) / n if n else 0.0,
                    tokens_in_flight=float(sum(w.tokens_in_flight for w in ready)),
                    prompt_tokens_per_second=prompt_rate,
                    generation_tokens_per_second=gen_rate,
                    kv_capacity_tokens_per_replica=float(setup.perf.kv_capacity_tokens),
                )
            )
        self._last_counters = {w.name: (w.prompt_tokens_done, w.generation_tokens_done) for w in self.live}
        ttfts = sorted(self._ttfts_in_interval)
        ttft_p95 = ttfts[min(len(ttfts) - 1, math.ceil(0.95 * len(ttfts)) - 1)] if ttfts else None
        self._ttfts_in_interval = []
        dispatched = self._dispatched_in_interval / interval
        self._dispatched_in_interval = 0
        return FleetSnapshot(
            time=now,
            variants=tuple(variants),
            ttft_p95_seconds=ttft_p95,
            router_held=len(self.held),
            dispatched_per_second=dispatched,
        )

    def _tick(self, now: float) -> None:
        self._expire_held(now)
        snapshot = self._snapshot(now)
        current = {
            v.name: sum(1 for w in self.live if w.variant == v.name and not w.is_draining)
            for v in self.config.variants
        }
        arrivals_per_s = self._arrivals_in_interval / self.config.interval_s
        self._arrivals_in_interval = 0
        concurrency = len(self.held) + sum(w.num_in_flight for w in self._serving())
        desired = self.autoscaler.decide(Observation(now, snapshot, current, arrivals_per_s, concurrency))
        self._apply(desired, now)
        self.timeline.append(
            TimelinePoint(
                now,
                {v.name: v.ready for v in snapshot.variants},
                {v.name: v.starting for v in snapshot.variants},
                {name: int(desired.get(name, 0)) for name in current},
                arrivals_per_s,
                len(self.held),
            )
        )
        if now + self.config.interval_s <= self._end:
            self.loop.at(now + self.config.interval_s, self._tick)

    # --- running ------------------------------------------------------------------------------------
    def run(self, horizon_s: float | None = None) -> SimResult:
        last = self.requests[-1].arrival if self.requests else 0.0
        horizon = horizon_s if horizon_s is not None else last
        self._end = horizon + self.config.tail_s
        for name, count in self._initial.items():
            for _ in range(count):
                self._create(name, 0.0, ready_at_once=True)
        self._schedule_arrival()
        first = self.config.interval_s if self.config.first_tick_s is None else self.config.first_tick_s
        self.loop.at(first, self._tick)
        self.loop.run_until(self._end)
        for request, _ in self.held:
            request.reject_reason = REJECT_UNFINISHED
        self.held.clear()
        for request in self.requests:
            if request.arrival <= self._end and not request.is_done:
                request.reject_reason = REJECT_UNFINISHED
        arrived = [r for r in self.requests if r.arrival <= self._end]
        return SimResult(
            arrived, self.timeline, self.workers, horizon, self.scale_events, self.loop.num_processed
        )
