"""A scripted fleet for policy tests: offered load over time in, snapshots out, the policy in the loop.

Load is expressed as `demand`: how many replicas the offered traffic needs at the KV target. The fleet
turns it into what workers would report: KV usage, overflow queue, running batches, token rates. Pods
become ready `startup_seconds` after they are requested; pods of variants in `unschedulable` never do.
Time is a plain number passed to the policy as `now`; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenfleet_operator.policy import Decision, decide
from tokenfleet_operator.resource import InferenceDeploymentSpec, parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

MAX_NUM_SEQS = 64


def make_spec(**autoscaling: Any) -> InferenceDeploymentSpec:
    accelerators = autoscaling.pop(
        "accelerators", [{"name": "h100", "hourlyCost": 4.0}, {"name": "a100", "hourlyCost": 2.5}]
    )
    base = {
        "minReplicas": 1,
        "maxReplicas": 16,
        "scaleUp": {"stabilizationSeconds": 0, "maxStep": 4},
        "scaleDown": {"stabilizationSeconds": 300, "maxStep": 1},
        "metrics": {"intervalSeconds": 5},
    }
    base.update(autoscaling)
    return parse_spec(
        {
            "model": {"name": "chat", "uri": "pvc://models/m"},
            "engine": {"maxNumSeqs": MAX_NUM_SEQS},
            "accelerators": accelerators,
            "autoscaling": base,
        }
    )


def load_snapshot(
    time: float,
    ready: dict[str, int],
    demand: float,
    starting: dict[str, int] | None = None,
    unschedulable: dict[str, int] | None = None,
    held: int = 0,
    kv_target: float = 0.8,
    queue_per_overload: float = 40.0,
) -> FleetSnapshot:
    """What workers would report with `demand` replicas' worth of traffic spread over `ready`."""
    starting = starting or {}
    unschedulable = unschedulable or {}
    total_ready = sum(ready.values())
    variants = []
    for name in sorted(set(ready) | set(starting) | set(unschedulable)):
        n = ready.get(name, 0)
        share = n / total_ready if total_ready else 0.0
        work = demand * kv_target * share  # KV-fraction-replicas of work landing on this variant
        kv = min(0.99, work / n) if n else 0.0
        overflow = max(0.0, work - 0.99 * n)
        variants.append(
            VariantSnapshot(
                name=name,
                ready=n,
                starting=starting.get(name, 0),
                unschedulable=unschedulable.get(name, 0),
                waiting=overflow * queue_per_overload,
                running=kv * n * MAX_NUM_SEQS * 0.5,
                kv_usage=kv,
                tokens_in_flight=0.0,
                prompt_tokens_per_second=kv * n * 400.0,
                generation_tokens_per_second=kv * n * 600.0,
            )
        )
    return FleetSnapshot(time=time, variants=tuple(variants), router_held=held)


@dataclass
class ScriptedFleet:
    spec: InferenceDeploymentSpec
    replicas: dict[str, int]
    startup_seconds: float = 0.0
    unschedulable: frozenset[str] = frozenset()
    history: list[FleetSnapshot] = field(default_factory=list)
    decisions: list[tuple[float, Decision]] = field(default_factory=list)
    _requested_at: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._requested_at = {name: [-1e9] * n for name, n in self.replicas.items()}

    def _counts(self, now: float) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        ready, starting, pending = {}, {}, {}
        for name, times in self._requested_at.items():
            if name in self.unschedulable:
                pending[name] = len(times)
                continue
            ready[name] = sum(1 for t in times if now - t >= self.startup_seconds)
            starting[name] = len(times) - ready[name]
        return ready, starting, pending

    def _apply(self, replicas: dict[str, int], now: float) -> None:
        for name, n in replicas.items():
            times = sorted(self._requested_at.get(name, []))
            # The Deployment controller removes not-yet-ready pods first, then the youngest.
            self._requested_at[name] = times[:n] if n <= len(times) else times + [now] * (n - len(times))
        self.replicas = dict(replicas)

    def run(
        self,
        demand: Callable[[float], float],
        seconds: float,
        start: float = 0.0,
        held: Callable[[float], int] = lambda t: 0,
        stale: Callable[[float], bool] = lambda t: False,
    ) -> list[int]:
        interval = self.spec.autoscaling.metrics.interval_seconds
        totals = []
        t = start
        while t < start + seconds:
            ready, starting, pending = self._counts(t)
            snap = load_snapshot(t, ready, demand(t), starting, pending, held(t))
            if stale(t):
                snap = FleetSnapshot(time=t, is_stale=True)
            self.history.append(snap)
            decision = decide(self.spec, self.history, self.replicas, t)
            self.decisions.append((t, decision))
            self._apply(decision.replicas, t)
            totals.append(decision.total)
            t += interval
        return totals


def flaps(decisions: list[tuple[float, Decision]], window: float) -> list[str]:
    """Direction reversals back to the first direction (up-down-up or down-up-down) within `window`."""
    moves = [(t, d.direction) for t, d in decisions if d.direction in ("up", "down")]
    found = []
    for i in range(len(moves) - 2):
        (t0, a), (_, b), (t2, c) = moves[i], moves[i + 1], moves[i + 2]
        if a == c != b and t2 - t0 < window:
            found.append(f"{a}-{b}-{c} between t={t0:g} and t={t2:g}")
    return found
