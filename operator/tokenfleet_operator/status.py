"""Pure builders for the resource's status, its conditions and the Event that reports a decision.

Figures are rounded so that a fleet whose load does not change produces an identical status, and the
operator (which only writes a status that differs) makes no write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenfleet_operator.child_meta import selector_string, worker_selector
from tokenfleet_operator.placement import hourly_cost
from tokenfleet_operator.policy import Decision
from tokenfleet_operator.resource import InferenceDeploymentSpec
from tokenfleet_operator.signals import queue_per_replica
from tokenfleet_operator.snapshot import FleetSnapshot

READY = "Ready"
PROGRESSING = "Progressing"
SCALING_LIMITED = "ScalingLimited"
METRICS_STALE = "MetricsStale"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class ScalingEvent:
    type: str  # Normal or Warning
    reason: str  # ScaledUp, ScaledDown, Rebalanced
    message: str


def conditions_for(decision: Decision, ready: int, requested: int) -> list[Condition]:
    if ready > 0:
        is_ready = Condition(READY, True, "WorkersReady", f"{ready} worker(s) ready")
    elif decision.total == 0:
        is_ready = Condition(
            READY, True, "ScaledToZero", "no workers; the router holds requests and wakes the fleet"
        )
    else:
        is_ready = Condition(READY, False, "NoReadyWorkers", f"0 of {requested} worker(s) ready")
    if ready != requested:
        progressing = Condition(PROGRESSING, True, "Scaling", f"{ready} of {requested} worker(s) ready")
    else:
        progressing = Condition(PROGRESSING, False, "Stable", f"{ready} worker(s) ready as requested")
    if decision.limits:
        first = decision.limits[0]
        limited = Condition(
            SCALING_LIMITED, True, first.reason, "; ".join(limit.message for limit in decision.limits)
        )
    else:
        limited = Condition(SCALING_LIMITED, False, "WithinLimits", "the fleet can be sized as the load asks")
    if decision.is_metrics_stale:
        stale = Condition(METRICS_STALE, True, "MetricsUnavailable", decision.reason)
    else:
        stale = Condition(METRICS_STALE, False, "MetricsFresh", "metrics collected this interval")
    return [is_ready, progressing, limited, stale]


def merge_conditions(
    new: Sequence[Condition], previous: Sequence[Mapping[str, Any]], generation: int, now_iso: str
) -> list[dict[str, Any]]:
    """Conditions as status dicts; lastTransitionTime only moves when a condition's status changes."""
    old = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        status = "True" if cond.status else "False"
        before = old.get(cond.type, {})
        since = before.get("lastTransitionTime") if before.get("status") == status else None
        out.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since or now_iso,
                "observedGeneration": generation,
            }
        )
    return out


def build_status(
    fleet: str,
    spec: InferenceDeploymentSpec,
    decision: Decision,
    latest: FleetSnapshot | None,
    generation: int,
    previous: Mapping[str, Any],
    now_iso: str,
) -> dict[str, Any]:
    """The full status after `decision` was applied, given the status it replaces."""
    snap = latest if latest is not None and not latest.is_stale else None
    ready = snap.ready if snap else int(previous.get("readyReplicas", 0))
    variants = []
    for acc in spec.accelerators:
        v = snap.variant(acc.name) if snap else None
        variants.append(
            {
                "name": acc.name,
                "replicas": decision.replicas.get(acc.name, 0),
                "readyReplicas": v.ready if v else 0,
                "desiredReplicas": decision.replicas.get(acc.name, 0),
                "unschedulable": v.unschedulable if v else 0,
            }
        )
    status: dict[str, Any] = {
        "replicas": decision.total,
        "readyReplicas": ready,
        "desiredReplicas": decision.total,
        "selector": selector_string(worker_selector(fleet)),
        "variants": variants,
        "hourlyCost": round(hourly_cost(spec, decision.replicas), 4),
        "lastDecision": decision.reason,
        "observedGeneration": generation,
        "lastScaleTime": now_iso if decision.is_change else previous.get("lastScaleTime"),
        "lastScaleReason": decision.reason if decision.is_change else previous.get("lastScaleReason"),
    }
    if snap is not None:
        status |= {
            "queueDepth": round(queue_per_replica(snap), 2),
            "kvCacheUtilization": round(min(max(snap.kv_usage, 0.0), 1.0), 3),
            "kvCachePercent": round(min(max(snap.kv_usage, 0.0), 1.0) * 100),
            "tokensPerSecond": round(snap.tokens_per_second, 1),
        }
    else:
        status |= {
            k: previous.get(k)
            for k in ("queueDepth", "kvCacheUtilization", "kvCachePercent", "tokensPerSecond")
        }
    cost = decision.cost_per_million_tokens
    status["costPerMillionTokens"] = round(cost, 3) if cost is not None else None
    conditions = conditions_for(decision, ready, decision.total)
    status["conditions"] = merge_conditions(conditions, previous.get("conditions") or [], generation, now_iso)
    return status


def status_changes(new: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `previous` into `new` (None deletes); empty when nothing changed."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if previous.get(key) != value:
            patch[key] = value
    return patch


def scaling_event(decision: Decision) -> ScalingEvent | None:
    """The Event for a decision that changes replicas, with the reason in words; None for a hold."""
    if not decision.is_change:
        return None
    reason = {"up": "ScaledUp", "down": "ScaledDown"}.get(decision.direction, "Rebalanced")
    per_variant = ", ".join(
        f"{name} {decision.previous.get(name, 0)}->{n}"
        for name, n in decision.replicas.items()
        if n != decision.previous.get(name, 0)
    )
    message = f"{decision.reason} ({per_variant})"
    if decision.limits:
        message += "; limited: " + "; ".join(limit.message for limit in decision.limits)
    return ScalingEvent("Warning" if decision.limits else "Normal", reason, message[:1024])
