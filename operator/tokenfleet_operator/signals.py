"""Desired-replica math for one snapshot: each load signal against its target, HPA style.

For a signal with per-replica value `v` and target `t` on `N` ready replicas the ratio is `r = v / t`;
when `|r - 1| <= tolerance` the signal asks for `N` (no change), otherwise for `ceil(N * r)`. The fleet's
recommendation is the largest ask. Signals:

- queue: (waiting + router-held) requests per ready replica vs `queueDepthPerReplica`;
- kv: mean KV-cache utilisation vs `kvCacheUtilization`;
- tokens: tokens in flight per replica vs `tokensInFlightPerReplica` (or, when unset, the KV target times
  the KV capacity the workers report). It leads KV usage on prefill-heavy load, whose prompts are
  admitted before their KV blocks fill;
- ttft: TTFT p95 vs its SLO. It only ever asks for more: a fast first token does not prove spare capacity;
- throughput: tokens processed per second against a per-replica rate learned from the fleet's history
  (`planned_throughput_per_replica`). It only holds replicas, never asks for more: a saturated replica
  of a KV-bound load processes fewer tokens than an unsaturated one, so its rate is a lower bound on
  capacity, fit to stop consolidation but not to order new replicas. Queue and KV readings go flat on
  an over-provisioned fleet whatever its load; this one keeps measuring the load;
- demand: the routers' request rate forecast a replica start-up ahead, in replicas with spare
  (forecast.py). When the forecast rises above what the fleet recently carried it asks for more before
  any queue forms; otherwise it is silent (a held forecast outlived a load drop: the smoothed level
  still carried the last burst, and a fleet set to shrink within seconds kept its peak).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tokenfleet_operator.forecast import Demand
from tokenfleet_operator.resource import AutoscalingSpec, EngineSpec
from tokenfleet_operator.snapshot import FleetSnapshot

_EPSILON = 1e-9
# TTFT p95 stays high for a while after capacity arrives (requests queued before it still finish late),
# so one interval's TTFT may at most ask for this multiple of the ready replicas.
TTFT_MAX_RATIO = 1.5
# A replica with at least this many requests queued is working flat out: its throughput is its capacity.
SATURATED_QUEUE_PER_REPLICA = 1.0
# The share of its saturated throughput a replica is planned to carry when saturation broke the TTFT
# target: half stays in reserve, as arrivals within an interval are burstier than its mean rate.
THROUGHPUT_TARGET = 0.5
# Intervals with traffic needed before the fleet's own throughput is trusted as a capacity measure.
MIN_THROUGHPUT_SAMPLES = 3
# Signals that read a backlog: a queue, and the TTFT of requests that waited in it. A burst's backlog is
# served by the time ordered replicas start; the load it came with is what comes back.
BACKLOG_SIGNALS = ("queue", "ttft")


@dataclass(frozen=True)
class Recommendation:
    replicas: int  # total replicas the load calls for, before stabilisation and limits
    signal: str  # the signal that asked for the most: queue, kv, tokens, ttft, held, none
    detail: str  # the measurement in words, for the decision's reason
    # The largest ask of the signals that measure load (not a backlog): what the scale-down window
    # holds on to once the moment has passed, where the routers' request counts feed a forecast.
    lasting: int = 0


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - _EPSILON))


def _ask(ready: int, ratio: float, tolerance: float) -> int:
    if abs(ratio - 1.0) <= tolerance:
        return ready
    return _ceil(ready * ratio)


def tokens_target_per_replica(spec: AutoscalingSpec, snap: FleetSnapshot) -> float | None:
    if spec.targets.tokens_in_flight_per_replica is not None:
        return float(spec.targets.tokens_in_flight_per_replica)
    capacity = snap.kv_capacity_tokens_per_replica
    return spec.targets.kv_cache_utilization * capacity if capacity > 0 else None


def queue_per_replica(snap: FleetSnapshot) -> float:
    return (snap.waiting + snap.router_held) / max(snap.ready, 1)


def _per_replica_rates(
    history: Sequence[FleetSnapshot], is_saturated: bool, ttft_slo: float | None
) -> list[float]:
    """Sorted tokens/s per ready replica over the snapshots that were (or were not) saturated and, when
    `ttft_slo` is given, kept TTFT p95 within it."""
    rates = []
    for s in history:
        if s.is_stale or s.ready == 0 or s.tokens_per_second <= 0:
            continue
        if (queue_per_replica(s) >= SATURATED_QUEUE_PER_REPLICA) != is_saturated:
            continue
        if ttft_slo and s.ttft_p95_seconds is not None and s.ttft_p95_seconds > ttft_slo:
            continue
        rates.append(s.tokens_per_second / s.ready)
    return sorted(rates)


def _median(values: list[float]) -> float:
    return values[len(values) // 2] if values else 0.0


def saturated_throughput_per_replica(history: Sequence[FleetSnapshot]) -> float | None:
    """Median tokens/s of a replica working flat out (work queued for it): its capacity; None until
    the fleet has been seen saturated."""
    return _median(_per_replica_rates(history, True, None)) or None


def planned_throughput_per_replica(
    spec: AutoscalingSpec, history: Sequence[FleetSnapshot], may_probe: bool = False
) -> float | None:
    """Tokens per second one replica can be planned to carry, learned from the fleet's own history.

    Lower bounds on the capacity at the TTFT target; the largest wins:
    - the median rate of saturated replicas (work queued for them) while TTFT stayed within target: the
      SLO has room for that queueing, so running full is fine;
    - `THROUGHPUT_TARGET` of the median saturated rate whatever the TTFT: saturation broke the SLO, so
      plan to run well below it;
    - the highest rate a replica carried without a queue and within the TTFT target (proven safe), plus
      the tolerance. With `may_probe` it is raised so that one replica fewer than ready now carries
      the same traffic, when no queue formed, TTFT kept its target and KV usage stayed under half its
      target over the whole history: consolidation probes one step beyond what was proven, and each
      step that keeps latency proves the next (the caller spaces the probes so each one's effect is
      seen first).
    Medians, because one interval's rate is skewed by prefill chunks completing on either side of its
    edges. None until `MIN_THROUGHPUT_SAMPLES` intervals carried traffic: too little to learn from.
    """
    slo = spec.targets.ttft_p95_seconds
    saturated = _per_replica_rates(history, True, None)
    if len(saturated) + len(_per_replica_rates(history, False, None)) < MIN_THROUGHPUT_SAMPLES:
        return None
    ready = history[-1].ready
    # Probing only on a calm history: where queues formed or KV filled past half its target, the
    # proven rate is already near the edge.
    is_calm = (
        not saturated
        and len(_per_replica_rates(history, False, slo)) == len(_per_replica_rates(history, False, None))
        and max(s.kv_usage for s in history) <= spec.targets.kv_cache_utilization / 2
    )
    probe = ready / (ready - 1) if may_probe and is_calm and ready > 1 else 1.0
    planned = max(
        _median(_per_replica_rates(history, True, slo)) if slo else 0.0,
        THROUGHPUT_TARGET * _median(saturated),
        max(_per_replica_rates(history, False, slo), default=0.0) * max(probe, 1.0 + spec.tolerance),
    )
    return planned or None


def trailing_tokens_per_second(history: Sequence[FleetSnapshot], window_s: float) -> dict[float, float]:
    """By snapshot time, the mean tokens/s over the fresh snapshots of the `window_s` up to it: one
    interval's rate swings with prefill chunks finishing on either side of its edges, and a scale-down
    window that keeps the largest ask would keep the largest swing."""
    fresh = [s for s in history if not s.is_stale]
    out: dict[float, float] = {}
    start = 0
    total = 0.0
    for end, snap in enumerate(fresh):
        total += snap.tokens_per_second
        while start < end and fresh[start].time <= snap.time - window_s:
            total -= fresh[start].tokens_per_second
            start += 1
        out[snap.time] = total / (end - start + 1)
    return out


@functools.lru_cache(maxsize=16384)
def recommend(
    spec: AutoscalingSpec,
    snap: FleetSnapshot,
    planned_per_replica: float | None = None,
    demand: Demand | None = None,
    tokens_per_second: float | None = None,
) -> Recommendation:
    """The total replica count this snapshot's load calls for.

    `planned_per_replica` (tokens per second, from `planned_throughput_per_replica`) turns on the
    throughput signal, measured on `tokens_per_second` when given (a smoothed rate) or else on the
    snapshot's own; `demand` (from forecast.py) turns on the leading signal. Cached by value
    (all arguments are frozen): the policy re-asks for every snapshot in its window at each tick, and a
    snapshot's answer never changes.
    """
    ready = snap.ready
    targets = spec.targets
    if ready == 0:
        queued = snap.waiting + snap.router_held
        if queued > 0:
            want = max(1, _ceil(queued / targets.queue_depth_per_replica))
            return Recommendation(want, "held", f"{queued:g} requests waiting with no ready worker", 0)
        # Nothing to measure yet: keep what is already coming rather than guess.
        return Recommendation(snap.starting, "none", "no ready workers to measure", snap.starting)

    asks: list[Recommendation] = []
    queue = queue_per_replica(snap)
    asks.append(
        Recommendation(
            _ask(ready, queue / targets.queue_depth_per_replica, spec.tolerance),
            "queue",
            f"queue {queue:.1f}/replica (target {targets.queue_depth_per_replica:g})",
        )
    )
    kv = snap.kv_usage
    asks.append(
        Recommendation(
            _ask(ready, kv / targets.kv_cache_utilization, spec.tolerance),
            "kv",
            f"KV cache {kv:.0%} (target {targets.kv_cache_utilization:.0%})",
        )
    )
    tokens_target = tokens_target_per_replica(spec, snap)
    if tokens_target:
        per_replica = snap.tokens_in_flight / ready
        asks.append(
            Recommendation(
                _ask(ready, per_replica / tokens_target, spec.tolerance),
                "tokens",
                f"{per_replica:.0f} tokens in flight/replica (target {tokens_target:.0f})",
            )
        )
    slo = targets.ttft_p95_seconds
    ttft = snap.ttft_p95_seconds
    if slo and ttft is not None and ttft > slo * (1.0 + spec.tolerance):
        ratio = min(ttft / slo, TTFT_MAX_RATIO)
        asks.append(Recommendation(_ceil(ready * ratio), "ttft", f"TTFT p95 {ttft:.2f}s (SLO {slo:g}s)"))
    if planned_per_replica:
        rate = snap.tokens_per_second if tokens_per_second is None else tokens_per_second
        asks.append(
            Recommendation(
                min(ready, _ceil(rate / planned_per_replica)),
                "throughput",
                f"{rate / ready:.0f} tokens/s per replica (plan {planned_per_replica:.0f})",
            )
        )
    if demand is not None:
        # Orders replicas only for rising load (noise on a steady load never does); holding is left to
        # the measured signals and the scale-down window.
        wanted = _ask(ready, demand.replicas / ready, spec.tolerance)
        asks.append(
            Recommendation(
                wanted if demand.is_rising else 0,
                "demand",
                f"forecast load {demand.replicas:.1f} replicas{' and rising' if demand.is_rising else ''}",
            )
        )
    # Ties go to the earliest signal in the list, so the reason names the most direct measurement.
    top = max(asks, key=lambda a: a.replicas)
    lasting = max((a.replicas for a in asks if a.signal not in BACKLOG_SIGNALS), default=0)
    return Recommendation(top.replicas, top.signal, top.detail, lasting)


def is_burst(spec: AutoscalingSpec, snap: FleetSnapshot) -> bool:
    """A sudden surge that should skip the scale-up window: queue or tokens at `burstFactor` x target."""
    if snap.ready == 0:
        return snap.router_held + snap.waiting > 0
    factor = spec.burst_factor
    if queue_per_replica(snap) >= factor * spec.targets.queue_depth_per_replica:
        return True
    tokens_target = tokens_target_per_replica(spec, snap)
    return bool(tokens_target) and snap.tokens_in_flight / snap.ready >= factor * (tokens_target or 0.0)


def consolidation_blocker(
    spec: AutoscalingSpec, engine: EngineSpec, snap: FleetSnapshot, remaining: int
) -> str | None:
    """Why `remaining` replicas could not carry the current load under target, or None when they can.

    The load now on `ready` replicas would spread over `remaining`: each per-replica figure grows by
    ready/remaining. Running batch slots are checked too (against the KV target as a utilisation bound),
    because a full batch with an empty queue still needs its replicas.
    """
    ready = snap.ready
    if remaining >= ready or ready == 0:
        return None
    if remaining <= 0:
        return None if snap.is_idle else "the fleet is not idle"
    targets = spec.targets
    scale = ready / remaining
    queue = queue_per_replica(snap) * scale
    if queue > targets.queue_depth_per_replica:
        return f"queue would be {queue:.1f}/replica > {targets.queue_depth_per_replica:g}"
    kv = snap.kv_usage * scale
    if kv > targets.kv_cache_utilization:
        return f"KV cache would be {kv:.0%} > {targets.kv_cache_utilization:.0%}"
    tokens_target = tokens_target_per_replica(spec, snap)
    tokens = snap.tokens_in_flight / remaining
    if tokens_target and tokens > tokens_target:
        return f"tokens in flight would be {tokens:.0f}/replica > {tokens_target:.0f}"
    batch = snap.running / remaining / engine.max_num_seqs
    if batch > targets.kv_cache_utilization:
        return f"running batches would be {batch:.0%} full > {targets.kv_cache_utilization:.0%}"
    return None
