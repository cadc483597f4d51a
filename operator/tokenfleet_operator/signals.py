"""Desired-replica math for one snapshot: each load signal against its target, HPA style.

For a signal with per-replica value `v` and target `t` on `N` ready replicas the ratio is `r = v / t`;
when `|r - 1| <= tolerance` the signal asks for `N` (no change), otherwise for `ceil(N * r)`. The fleet's
recommendation is the largest ask. Signals:

- queue: (waiting + router-held) requests per ready replica vs `queueDepthPerReplica`;
- kv: mean KV-cache utilisation vs `kvCacheUtilization`;
- tokens: tokens in flight per replica vs `tokensInFlightPerReplica` (or, when unset, the KV target times
  the KV capacity the workers report). It leads KV usage on prefill-heavy load, whose prompts are
  admitted before their KV blocks fill;
- ttft: TTFT p95 vs its SLO. It only ever asks for more: a fast first token does not prove spare capacity.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from tokenfleet_operator.resource import AutoscalingSpec, EngineSpec
from tokenfleet_operator.snapshot import FleetSnapshot

_EPSILON = 1e-9
# TTFT p95 stays high for a while after capacity arrives (requests queued before it still finish late),
# so one interval's TTFT may at most ask for this multiple of the ready replicas.
TTFT_MAX_RATIO = 1.5


@dataclass(frozen=True)
class Recommendation:
    replicas: int  # total replicas the load calls for, before stabilisation and limits
    signal: str  # the signal that asked for the most: queue, kv, tokens, ttft, held, none
    detail: str  # the measurement in words, for the decision's reason


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


@functools.lru_cache(maxsize=16384)
def recommend(spec: AutoscalingSpec, snap: FleetSnapshot) -> Recommendation:
    """The total replica count this snapshot's load calls for.

    Cached by value (both arguments are frozen): the policy re-asks for every snapshot in its window at
    each tick, and a snapshot's answer never changes.
    """
    ready = snap.ready
    targets = spec.targets
    if ready == 0:
        queued = snap.waiting + snap.router_held
        if queued > 0:
            want = max(1, _ceil(queued / targets.queue_depth_per_replica))
            return Recommendation(want, "held", f"{queued:g} requests waiting with no ready worker")
        # Nothing to measure yet: keep what is already coming rather than guess.
        return Recommendation(snap.starting, "none", "no ready workers to measure")

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
    # Ties go to the earliest signal in the list, so the reason names the most direct measurement.
    return max(asks, key=lambda a: a.replicas)


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
