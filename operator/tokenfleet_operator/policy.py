"""The autoscaling policy: one pure, deterministic function from what was seen to what to run.

`decide(spec, history, current, now)` reads no clock and does no I/O. Its steps, in order:

1. Stale or missing metrics: hold the current replicas (only the min/max bounds apply) and flag it.
2. Scale from zero when requests wait at the router; scale to zero after `scaleToZeroAfterSeconds` of
   uninterrupted, fresh, idle snapshots.
3. Otherwise recommend a total per snapshot (signals.py; the throughput signal uses a per-replica rate
   learned from the whole history, which may probe one replica below what was proven at most once per
   scale-down window, and reads the rate smoothed over up to a minute; the leading signal,
   forecast.py, orders replicas for the routers' request rate forecast a replica start-up ahead),
   stabilise over the windows (stabilization.py), skipping the scale-up window on a burst and, when
   the routers' counts show the load's swings are noise rather than bursts, trimming the scale-down
   window's rare largest asks; wherever they count requests, the window holds past asks of the load
   signals only (a backlog is served by the time its replicas start), and on bursts a burst floor
   holds the rate of the last bursts (`_burst_floor`); while replicas are starting, grow to at most
   burstFactor x the ready capacity (pending-replica guard); limit the step (a burst may double the
   fleet); only scale down as far as the remaining replicas stay under target (consolidation check).
4. Clamp to min/max and spread the total over variants by cost per token, within the budget, avoiding
   variants whose pods were recently Unschedulable (placement.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenfleet_operator import forecast, placement, signals
from tokenfleet_operator.resource import InferenceDeploymentSpec
from tokenfleet_operator.snapshot import FleetSnapshot
from tokenfleet_operator.stabilization import NOISE_QUANTILE, TimedRecommendation, limit_step, stabilize

# A variant whose pods were Unschedulable stays avoided this long (at least), so capacity does not swing
# back onto it every other interval.
UNSCHEDULABLE_MEMORY_INTERVALS = 12
# The throughput signal reads the mean rate over this long at most (signals.trailing_tokens_per_second).
THROUGHPUT_SMOOTHING_SECONDS = 60.0
# The burst floor plans this much capacity over what a burst's request rate needs flat out: a replica
# run flat out queues every request that bunches up within the interval.
BURST_HEADROOM = 1.4
# The burst floor remembers bursts this many scale-down windows back: bursts that recur about one window
# apart (the Azure code trace's, against the default 300 s) otherwise find the fleet just shrunk.
BURST_MEMORY = 1.2


@dataclass(frozen=True)
class Decision:
    replicas: dict[str, int]  # per variant
    previous: dict[str, int]
    reason: str
    recommendation: int = 0  # what the latest load asked for, before windows and limits
    is_metrics_stale: bool = False
    limits: tuple[placement.Limit, ...] = ()  # why the fleet is ScalingLimited; empty when not
    cost_per_million_tokens: float | None = None
    is_cost_above_target: bool = False

    @property
    def total(self) -> int:
        return sum(self.replicas.values())

    @property
    def previous_total(self) -> int:
        return sum(self.previous.values())

    @property
    def direction(self) -> str:
        if self.total > self.previous_total:
            return "up"
        if self.total < self.previous_total:
            return "down"
        return "hold" if self.replicas == self.previous else "rebalance"

    @property
    def is_change(self) -> bool:
        return self.replicas != self.previous

    @property
    def is_scaling_limited(self) -> bool:
        return bool(self.limits)


def history_seconds(spec: InferenceDeploymentSpec) -> float:
    """How far back `decide` reads: every window, plus the leading signal's warm-up before the
    oldest snapshot a window re-reads (its smoothing restarts where the history starts, so a past
    ask would otherwise drift as the history rolls on)."""
    auto = spec.autoscaling
    interval = auto.metrics.interval_seconds
    windows = max(
        auto.scale_up.stabilization_seconds,
        BURST_MEMORY * auto.scale_down.stabilization_seconds,
        auto.scale_to_zero_after_seconds or 0,
        UNSCHEDULABLE_MEMORY_INTERVALS * interval,
    )
    return windows + forecast.WARMUP_SECONDS + 2 * interval


def _is_stale(history: Sequence[FleetSnapshot], spec: InferenceDeploymentSpec, now: float) -> bool:
    if not history:
        return True
    latest = history[-1]
    return latest.is_stale or now - latest.time > spec.autoscaling.metrics.stale_after_seconds


def blocked_variants(
    spec: InferenceDeploymentSpec, history: Sequence[FleetSnapshot], now: float
) -> dict[str, int]:
    """Variants with Unschedulable pods in the recent past, with the largest count seen."""
    memory = max(
        spec.autoscaling.scale_down.stabilization_seconds,
        UNSCHEDULABLE_MEMORY_INTERVALS * spec.autoscaling.metrics.interval_seconds,
    )
    blocked: dict[str, int] = {}
    for snap in history:
        if now - memory <= snap.time <= now:
            for v in snap.variants:
                if v.unschedulable > 0:
                    blocked[v.name] = max(blocked.get(v.name, 0), v.unschedulable)
    return blocked


def _has_been_idle(spec: InferenceDeploymentSpec, history: Sequence[FleetSnapshot], now: float) -> bool:
    after = spec.autoscaling.scale_to_zero_after_seconds
    if after is None or not history or history[0].time > now - after:
        return False  # not enough history to vouch for the whole idle period
    window = [s for s in history if s.time >= now - after]
    max_gap = spec.autoscaling.metrics.stale_after_seconds
    times = [now - after, *(s.time for s in window), now]
    has_gap = any(b - a > max_gap for a, b in itertools.pairwise(times))
    return bool(window) and not has_gap and all(s.is_idle and not s.is_stale for s in window)


def _scaled_down_within(history: Sequence[FleetSnapshot], intervals: int) -> bool:
    """Whether the fleet had more replicas (ready or starting) in the last `intervals` snapshots."""
    if not history:
        return False
    size = history[-1].ready + history[-1].starting
    recent = history[-intervals:]
    return any(s.ready + s.starting > size for s in recent if not s.is_stale)


def _pending_guard(target: int, current_total: int, latest: FleetSnapshot, burst_factor: float) -> int:
    """While replicas start (or wait to be placed elsewhere), queues keep growing because nobody serves
    them yet, so every interval would ask for more. Ordered replicas count as capacity that is coming: the
    fleet grows to at most `burst_factor` times the capacity that has proven ready, and grows again as
    the ordered replicas turn ready."""
    if latest.starting + latest.unschedulable == 0 or target <= current_total:
        return target
    cap = max(current_total, math.ceil(burst_factor * latest.ready))
    return min(target, cap)


def _burst_floor(demand: Mapping[float, forecast.Demand], now: float, window_s: float) -> int:
    """Replicas the highest demand of the last `window_s` needs, with `BURST_HEADROOM`.

    On bursty traffic the window's asks can all be low while the bursts are what comes back: asks
    read queues and KV at the moment, and a quiet stretch before a burst asks for little. The
    routers' request rate at the busiest moment of the last bursts is the size of the next one. The
    rate's smoothed level, not its trend: a burst's rise over seconds, extrapolated, sized a fleet for a
    burst twice as large (17 replicas where 9 served it). (Azure code trace in the autoscaling bench,
    with minReplicas 4: together with backlog asks no longer holding the window, 7.84 -> 6.44 GPU-h
    at 99.1% of requests within the SLO; with the trace's copies jittered by another seed, 8.04 ->
    6.38.)"""
    peak = max((d.replicas for t, d in demand.items() if now - window_s <= t <= now), default=0.0)
    return math.ceil(peak * BURST_HEADROOM)


def _scale_down_floor(
    spec: InferenceDeploymentSpec, latest: FleetSnapshot, current_total: int, target: int
) -> tuple[int, str | None]:
    """Raise a scale-down target until the remaining replicas could carry the current load."""
    blocker = None
    while target < current_total:
        remaining = max(target - latest.starting, 0)
        blocker = signals.consolidation_blocker(spec.autoscaling, spec.engine, latest, remaining)
        if blocker is None:
            return target, None
        target += 1
    return target, blocker


def _plan_total(
    spec: InferenceDeploymentSpec, history: Sequence[FleetSnapshot], current_total: int, now: float
) -> tuple[int, str, int]:
    """The total to run, the reason in words, and the raw recommendation."""
    auto = spec.autoscaling
    latest = history[-1]
    # Consolidation beyond the throughput a replica has proven removes one replica per scale-down
    # window, so each step's effect on latency is seen before the next.
    probe_spacing = max(1, math.ceil(auto.scale_down.stabilization_seconds / auto.metrics.interval_seconds))
    capacity = signals.planned_throughput_per_replica(
        auto, history, may_probe=not _scaled_down_within(history, probe_spacing)
    )
    # Bursts come back, so a burst's scale-down holds for the largest ask of the window, and its trend
    # over seconds says nothing about the next minute. Noise does neither: a high quantile, a trend.
    bursty = forecast.is_bursty(history, auto.scale_down.stabilization_seconds, now)
    flat_out = signals.saturated_throughput_per_replica(history)
    full = max(capacity or 0.0, flat_out or 0.0) or None
    demand = forecast.demand_by_time(history, full, auto.scale_down.stabilization_seconds)
    # Never smoothed over longer than the scale-down window: a fleet set to follow load quickly still does.
    smoothing = min(THROUGHPUT_SMOOTHING_SECONDS, auto.scale_down.stabilization_seconds)
    smoothed = signals.trailing_tokens_per_second(history, smoothing)

    def recommend(s: FleetSnapshot) -> signals.Recommendation:
        return signals.recommend(auto, s, capacity, demand.get(s.time), smoothed.get(s.time))

    rec = recommend(latest)
    if current_total == 0:
        if rec.replicas > 0:
            target = max(1, min(rec.replicas, auto.scale_up.max_step), auto.min_replicas)
            return target, f"scale from zero: {rec.detail}", rec.replicas
        if auto.min_replicas > 0:
            return auto.min_replicas, f"minReplicas is {auto.min_replicas}", 0
        return 0, "idle at zero replicas", 0
    if auto.min_replicas == 0 and _has_been_idle(spec, history, now):
        return 0, f"idle for {auto.scale_to_zero_after_seconds}s: scale to zero", 0

    window = max(auto.scale_up.stabilization_seconds, auto.scale_down.stabilization_seconds)
    # Where the routers count requests (`bursty` is then known), a past backlog's ask is not held: the
    # queue it measured is work already arrived, and the load signals and the forecast say what is still
    # coming (on bursts the burst floor adds what their load needs). Without the counts, no forecast.
    has_forecast = bursty is not None

    def held_ask(s: FleetSnapshot) -> int:
        r = recommend(s)
        return r.lasting if has_forecast and s is not latest else r.replicas

    timed = [
        TimedRecommendation(s.time, held_ask(s))
        for s in history
        if not s.is_stale and now - window <= s.time <= now
    ]
    is_burst = signals.is_burst(auto, latest)
    first = history[0]  # the fleet as the operator found it, while the history is short
    is_window_seen = first.time <= now - auto.scale_down.stabilization_seconds
    target = stabilize(
        timed,
        current_total,
        now,
        auto.scale_up.stabilization_seconds,
        auto.scale_down.stabilization_seconds,
        skip_up_window=is_burst,
        down_quantile=NOISE_QUANTILE if bursty is False else 1.0,
        unseen_ask=None if is_window_seen else first.ready + first.starting + first.unschedulable,
    )
    detail = rec.detail
    guarded = _pending_guard(target, current_total, latest, auto.burst_factor)
    if guarded < target:
        detail += f"; waiting for {latest.starting + latest.unschedulable} ordered replica(s)"
    max_up = max(auto.scale_up.max_step, current_total) if is_burst else auto.scale_up.max_step
    target = limit_step(current_total, guarded, max_up, auto.scale_down.max_step)
    target = min(max(target, auto.min_replicas, 1), auto.max_replicas)
    down_s = auto.scale_down.stabilization_seconds
    if target < current_total and forecast.is_bursty(history, BURST_MEMORY * down_s, now):
        floor = _burst_floor(forecast.demand_by_time(history, full, down_s), now, BURST_MEMORY * down_s)
        if floor > target:
            target = min(current_total, floor)
            detail += f"; bursts: holding {target} for the recent bursts' rate ({floor} replicas)"
    if target < current_total:
        target, blocker = _scale_down_floor(spec, latest, current_total, target)
        if blocker:
            detail += f"; consolidation check holds: {blocker}"
    if is_burst and target > current_total:
        detail = f"burst: {detail}"
    return target, detail, rec.replicas


def _reason(previous: int, total: int, detail: str) -> str:
    if total > previous:
        return f"scale up {previous}->{total}: {detail}"
    if total < previous:
        return f"scale down {previous}->{total}: {detail}"
    return f"hold {total}: {detail}"


def decide(
    spec: InferenceDeploymentSpec,
    history: Sequence[FleetSnapshot],
    current: Mapping[str, int],
    now: float,
) -> Decision:
    """Replicas per variant for the fleet, given snapshots oldest-first and the replicas set now."""
    auto = spec.autoscaling
    previous = {name: int(current.get(name, 0)) for name in spec.variant_names}
    current_total = sum(previous.values())
    limits: list[placement.Limit] = []
    is_stale = _is_stale(history, spec, now)
    latest = history[-1] if history else FleetSnapshot(time=now, is_stale=True)

    if is_stale:
        total = min(max(current_total, auto.min_replicas), auto.max_replicas)
        recommendation = current_total
        age = f"{now - latest.time:.0f}s old" if history else "missing"
        detail = f"metrics {age}: holding, never scaling down on stale data"
    else:
        total, detail, recommendation = _plan_total(spec, history, current_total, now)
        if total > auto.max_replicas or recommendation > auto.max_replicas:
            message = f"at maxReplicas {auto.max_replicas} (load asks for {recommendation})"
            limits.append(placement.Limit(placement.AT_MAX_REPLICAS, message))
        total = min(total, auto.max_replicas)

    blocked = {} if is_stale else blocked_variants(spec, history, now)
    ranking = placement.rank_by_cost(spec, history)
    # Pods of a blocked variant that never got scheduled are not capacity: hand them to the next variant.
    start = dict(previous)
    for name, pending in blocked.items():
        if name in start:
            snap = latest.variant(name)
            start[name] = min(start[name], snap.ready + snap.starting)
            others = [n for n in ranking if n not in blocked]
            fallback = f", adding capacity on {others[0]}" if others else ""
            message = f"variant {name} unschedulable ({pending} pod(s) pending recently){fallback}"
            limits.append(placement.Limit(placement.UNSCHEDULABLE, message))
    floor = 0 if total == 0 else max(auto.min_replicas, 1)
    placed = placement.place(spec, start, total, ranking, frozenset(blocked), floor)
    limits.extend(placed.limits)

    cost = None if is_stale else placement.fleet_cost_per_million_tokens(spec, latest)
    cost_target = auto.targets.max_cost_per_million_tokens
    is_cost_above = cost is not None and cost_target is not None and cost > cost_target
    reason = _reason(current_total, sum(placed.replicas.values()), detail)
    if is_cost_above:
        reason += f"; cost ${cost:.2f}/Mtok above target ${cost_target:g}"
    return Decision(
        replicas=placed.replicas,
        previous=previous,
        reason=reason,
        recommendation=recommendation,
        is_metrics_stale=is_stale,
        limits=tuple(limits),
        cost_per_million_tokens=cost,
        is_cost_above_target=is_cost_above,
    )


def fixed_decision(
    spec: InferenceDeploymentSpec,
    history: Sequence[FleetSnapshot],
    current: Mapping[str, int],
    total: int,
    why: str,
    now: float,
) -> Decision:
    """For modes external and off: the total is given (spec.replicas); only spread it over variants."""
    previous = {name: int(current.get(name, 0)) for name in spec.variant_names}
    latest = history[-1] if history else FleetSnapshot(time=now, is_stale=True)
    is_stale = _is_stale(history, spec, now)
    blocked = {} if is_stale else blocked_variants(spec, history, now)
    ranking = placement.rank_by_cost(spec, history)
    placed = placement.place(spec, previous, total, ranking, frozenset(blocked), floor=0)
    limits = list(placed.limits)
    limits += [
        placement.Limit(placement.UNSCHEDULABLE, f"variant {name} unschedulable ({n} pod(s) pending)")
        for name, n in blocked.items()
    ]
    cost = None if is_stale else placement.fleet_cost_per_million_tokens(spec, latest)
    return Decision(
        replicas=placed.replicas,
        previous=previous,
        reason=_reason(sum(previous.values()), sum(placed.replicas.values()), why),
        recommendation=total,
        is_metrics_stale=is_stale,
        limits=tuple(limits),
        cost_per_million_tokens=cost,
    )
