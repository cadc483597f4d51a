"""Cost per token and which accelerator variant gains or loses replicas.

Cost per million tokens of a variant = hourly cost / (tokens per second per replica x 3600) x 1e6.
Measured throughput follows demand, so a lightly loaded replica looks expensive; the per-replica figure is
therefore divided by how busy the replica is (the larger of KV usage and batch fill) to estimate what
it delivers when full. Below 5 % busy the estimate means nothing and the variant is ranked by hourly
cost alone, as if all variants had the same throughput.

Capacity is added on the cheapest variant that can take it (not blocked as unschedulable, under its own
maxReplicas, within the budget) and removed from the most expensive one first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tokenfleet_operator.resource import InferenceDeploymentSpec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

_MIN_BUSY = 0.05


# Reasons a fleet is ScalingLimited, as condition reasons.
AT_MAX_REPLICAS = "AtMaxReplicas"
BUDGET_CAP = "BudgetCap"
UNSCHEDULABLE = "Unschedulable"
NO_ROOM = "NoVariantHasRoom"


@dataclass(frozen=True)
class Limit:
    reason: str  # one of the constants above
    message: str


@dataclass(frozen=True)
class Placement:
    replicas: dict[str, int]
    limits: tuple[Limit, ...] = ()  # why the requested total could not be placed (ScalingLimited)
    is_budget_capped: bool = False


def hourly_cost(spec: InferenceDeploymentSpec, replicas: Mapping[str, int]) -> float:
    return sum(spec.accelerator(name).hourly_cost * n for name, n in replicas.items())


def fleet_cost_per_million_tokens(spec: InferenceDeploymentSpec, snap: FleetSnapshot) -> float | None:
    """What the ready replicas cost per million tokens they actually processed; None with no tokens."""
    tokens_per_second = snap.tokens_per_second
    if tokens_per_second <= 0:
        return None
    cost = sum(
        spec.accelerator(v.name).hourly_cost * v.ready for v in snap.variants if v.name in spec.variant_names
    )
    return cost / (tokens_per_second * 3600.0) * 1e6


def _full_throughput_per_replica(variant: VariantSnapshot, max_num_seqs: int) -> float | None:
    if variant.ready == 0 or variant.tokens_per_second <= 0:
        return None
    batch_fill = variant.running / (variant.ready * max_num_seqs)
    busy = max(variant.kv_usage, batch_fill)
    if busy < _MIN_BUSY:
        return None
    return variant.tokens_per_second / variant.ready / min(busy, 1.0)


def variant_cost_per_million_tokens(
    spec: InferenceDeploymentSpec, snap: FleetSnapshot, name: str
) -> float | None:
    throughput = _full_throughput_per_replica(snap.variant(name), spec.engine.max_num_seqs)
    if throughput is None:
        return None
    return spec.accelerator(name).hourly_cost / (throughput * 3600.0) * 1e6


def rank_by_cost(spec: InferenceDeploymentSpec, snap: FleetSnapshot) -> tuple[str, ...]:
    """Variant names, cheapest per token first; unmeasured variants are compared by hourly cost."""
    estimates = {a.name: variant_cost_per_million_tokens(spec, snap, a.name) for a in spec.accelerators}
    measured = [e for e in estimates.values() if e is not None]
    # Scale hourly costs onto the measured ones so measured and unmeasured variants compare fairly.
    per_dollar = None
    if measured:
        pairs = [
            (estimates[a.name], a.hourly_cost) for a in spec.accelerators if estimates[a.name] is not None
        ]
        per_dollar = sum(e for e, _ in pairs if e is not None) / max(sum(c for _, c in pairs), 1e-12)

    def key(index_and_name: tuple[int, str]) -> tuple[float, float, int]:
        index, name = index_and_name
        acc = spec.accelerator(name)
        estimate = estimates[name]
        if estimate is None:
            estimate = acc.hourly_cost * per_dollar if per_dollar is not None else acc.hourly_cost
        return (estimate, acc.hourly_cost, index)

    return tuple(name for _, name in sorted(enumerate(spec.variant_names), key=key))


def _has_room(spec: InferenceDeploymentSpec, name: str, replicas: Mapping[str, int]) -> bool:
    limit = spec.accelerator(name).max_replicas
    return limit is None or replicas[name] < limit


def place(
    spec: InferenceDeploymentSpec,
    current: Mapping[str, int],
    target_total: int,
    ranking: tuple[str, ...],
    blocked: frozenset[str],
    floor: int,
) -> Placement:
    """Spread `target_total` replicas over the variants, changing as few as possible from `current`.

    `blocked` variants get no new replicas. The budget may lower the total, never below `floor`.
    """
    replicas = {name: max(0, int(current.get(name, 0))) for name in spec.variant_names}
    for acc in spec.accelerators:
        if acc.max_replicas is not None:
            replicas[acc.name] = min(replicas[acc.name], acc.max_replicas)
    budget = spec.autoscaling.max_hourly_cost
    limits: list[Limit] = []
    is_budget_capped = False

    while sum(replicas.values()) > target_total:
        name = next(n for n in reversed(ranking) if replicas[n] > 0)
        replicas[name] -= 1

    while sum(replicas.values()) < target_total:
        candidates = [n for n in ranking if n not in blocked and _has_room(spec, n, replicas)]
        affordable = [
            n
            for n in candidates
            if budget is None
            or hourly_cost(spec, replicas) + spec.accelerator(n).hourly_cost <= budget + 1e-9
        ]
        if not affordable:
            missing = target_total - sum(replicas.values())
            if candidates:
                is_budget_capped = True
                limits.append(Limit(BUDGET_CAP, f"budget ${budget:g}/h leaves {missing} replica(s) unplaced"))
            else:
                limits.append(
                    Limit(NO_ROOM, f"no schedulable variant has room for {missing} more replica(s)")
                )
            break
        replicas[affordable[0]] += 1

    if budget is not None:
        while hourly_cost(spec, replicas) > budget + 1e-9 and sum(replicas.values()) > floor:
            name = next(n for n in reversed(ranking) if replicas[n] > 0)
            replicas[name] -= 1
            if not is_budget_capped:
                is_budget_capped = True
                limits.append(Limit(BUDGET_CAP, f"budget ${budget:g}/h caps the fleet"))
    return Placement(replicas=replicas, limits=tuple(limits), is_budget_capped=is_budget_capped)
