"""Cost per token and which accelerator variant gains or loses replicas.

Cost per million tokens of a variant = hourly cost / (tokens per second per replica x 3600) x 1e6.
Measured throughput follows demand, so a lightly loaded replica looks expensive; the per-replica figure is
therefore divided by how busy the replica is (the larger of KV usage and batch fill) to estimate what
it delivers when full. Below 5 % busy the estimate means nothing.

A variant is ranked by its newest measurement in the history, not only the latest snapshot: the
placement removes the dearer variant first, so the latest snapshot soon has no replica of it, and an
unmeasured variant looked as fast as the measured one. A cheap-by-the-hour, slow accelerator then
won every ranking and took the whole fleet (in the simulator, ServeGen on H100 + L40S ran 899 L40S
hours for 139 H100 hours' work, 2.3x the dollars). A declared `tokensPerSecond` (a benchmark of the
workload on that accelerator) takes precedence over measurement: the full-load figure extrapolated
from a replica 5-50% busy swings with the load and, on a KV- or latency-bound accelerator, promises
load the SLO never lets it take (with only memory, that ServeGen mix still ran 50 L40S hours and cost
17% more than H100 alone). Undeclared and never measured, a variant is ranked as if it were as fast
as the ranked ones.

Capacity is added on the cheapest variant that can take it (not blocked as unschedulable, under its own
maxReplicas, within the budget) and removed from the most expensive one first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def cost_estimates(
    spec: InferenceDeploymentSpec, history: Sequence[FleetSnapshot]
) -> dict[str, float | None]:
    """Per variant, cost per million tokens at full load: from its declared throughput, else its
    newest measurement in `history`; None when neither exists."""
    estimates: dict[str, float | None] = {}
    for acc in spec.accelerators:
        if acc.tokens_per_second is not None:
            estimates[acc.name] = acc.hourly_cost / (acc.tokens_per_second * 3600.0) * 1e6
            continue
        measured = (variant_cost_per_million_tokens(spec, snap, acc.name) for snap in reversed(history))
        estimates[acc.name] = next((e for e in measured if e is not None), None)
    return estimates


def rank_by_cost(spec: InferenceDeploymentSpec, history: Sequence[FleetSnapshot]) -> tuple[str, ...]:
    """Variant names, cheapest per token first (`cost_estimates`); variants with no estimate are
    compared by hourly cost, scaled onto the estimated ones."""
    estimates = cost_estimates(spec, history)
    pairs = [(e, a.hourly_cost) for a in spec.accelerators if (e := estimates[a.name]) is not None]
    per_dollar = sum(e for e, _ in pairs) / max(sum(c for _, c in pairs), 1e-12) if pairs else None

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
