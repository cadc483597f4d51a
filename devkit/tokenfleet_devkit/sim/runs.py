"""Running policies on a scenario and the fair threshold search: cheapest setting that meets the SLO.

Every run gets fresh requests built from the same trace records, so all policies see identical arrivals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenfleet_devkit import traces
from tokenfleet_devkit.sim import baselines, oracle
from tokenfleet_devkit.sim.adapters import OperatorPolicy, VariantPrice, fleet_spec
from tokenfleet_devkit.sim.fleet import SimConfig, SimResult, Simulation, VariantSetup
from tokenfleet_devkit.sim.metrics import Slo, summarize
from tokenfleet_devkit.sim.observation import Autoscaler
from tokenfleet_devkit.sim.scenarios import to_requests
from tokenfleet_devkit.sim.worker import EngineConfig

SLO_ATTAINMENT_TARGET = 0.99


@dataclass
class Run:
    policy: str
    setting: str
    summary: dict[str, Any]
    result: SimResult

    @property
    def meets_slo(self) -> bool:
        return float(self.summary["slo_attainment"]) >= SLO_ATTAINMENT_TARGET


@dataclass
class Search:
    policy: str
    tried: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        meeting = [r for r in self.tried if r.meets_slo]
        if meeting:
            return min(meeting, key=lambda r: float(r.summary["dollars"]))
        return max(self.tried, key=lambda r: float(r.summary["slo_attainment"]))

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "setting": r.setting,
                "gpu_hours": r.summary["gpu_hours"],
                "dollars": r.summary["dollars"],
                "slo_attainment": r.summary["slo_attainment"],
                "meets_slo": r.meets_slo,
            }
            for r in self.tried
        ]


@dataclass
class Bench:
    """One scenario's fixed inputs: its records, SLO, fleet shape and the oracle's per-minute demand."""

    records: list[traces.TraceRecord]
    slo: Slo
    config: SimConfig
    horizon_s: float
    need_per_minute: list[int] = field(default_factory=list)

    @property
    def costs(self) -> dict[str, float]:
        return {v.name: v.hourly_cost for v in self.config.variants}

    def run(self, autoscaler: Autoscaler, setting: str, initial: Mapping[str, int] | None = None) -> Run:
        # Autoscalers start at what the first minute needs, as a fleet that has been running would.
        first = self.config.variants[0].name
        start = {first: self.need_per_minute[0] if self.need_per_minute else 1}
        sim = Simulation(self.config, autoscaler, to_requests(self.records), initial or start)
        result = sim.run(self.horizon_s)
        summary = summarize(result, self.slo, self.costs, self.need_per_minute)
        return Run(autoscaler.name, setting, summary, result)


@dataclass(frozen=True)
class Setting:
    """One point of a policy's search: its label, how to build the autoscaler, and its minReplicas."""

    label: str
    build: Callable[[], Autoscaler]
    min_replicas: int = 1


def run_setting(bench: Bench, setting: Setting) -> Run:
    """One setting on the bench's arrivals; with a floor it starts with its floor running, as a
    fleet given minReplicas has been."""
    start = max(setting.min_replicas, bench.need_per_minute[0] if bench.need_per_minute else 1)
    return bench.run(setting.build(), setting.label, {bench.config.variants[0].name: start})


def search_static(bench: Bench, variant: str, low: int = 1, high: int = 64) -> Search:
    """Fewest fixed replicas meeting the SLO, by bisection (more replicas never hurt latency)."""
    found = Search("static-peak")
    runs: dict[int, Run] = {}

    def attempt(n: int) -> Run:
        if n not in runs:
            runs[n] = bench.run(baselines.Static(variant, n), f"replicas={n}", {variant: n})
            found.tried.append(runs[n])
        return runs[n]

    while low < high:
        mid = (low + high) // 2
        if attempt(mid).meets_slo:
            high = mid
        else:
            low = mid + 1
    attempt(low)
    return found


def search_oracle(bench: Bench, variant: str, demand: Sequence[float], cap: int, steps: int) -> Search:
    """Bisect the utilisation (geometrically, in [0.05, 2]) for the cheapest plan meeting the SLO."""
    found = Search("oracle")
    low, high = 0.05, 2.0
    for _ in range(steps):
        u = math.sqrt(low * high)
        schedule = oracle.plan(demand, u, cap)
        run = bench.run(
            baselines.Schedule(variant, schedule),
            f"utilisation={u:.3g} (peak {max(schedule)})",
            {variant: schedule[0]},
        )
        found.tried.append(run)
        if run.meets_slo:
            low = u
        else:
            high = u
    return found


def setting_value(run: Run) -> float:
    """The number in a setting such as `utilisation=0.3 (peak 9)`."""
    return float(run.setting.split("=")[1].split()[0])


def tokenfleet_policy(
    variants: Sequence[VariantSetup],
    slo: Slo,
    interval_s: float,
    autoscaling: Mapping[str, Any] | None = None,
    engine: EngineConfig | None = None,
) -> OperatorPolicy:
    """The operator's policy with the SLO's TTFT target and any overrides of spec.autoscaling."""
    merged: dict[str, Any] = {"targets": {"ttftP95Seconds": slo.ttft_p95_s}}
    for key, value in (autoscaling or {}).items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, Mapping) else value
    spec = fleet_spec(
        [VariantPrice(v.name, v.hourly_cost, v.max_replicas, v.tokens_per_second) for v in variants],
        interval_s=interval_s,
        max_num_seqs=(engine or EngineConfig()).max_num_seqs,
        max_batched_tokens=(engine or EngineConfig()).max_batched_tokens,
        autoscaling=merged,
    )
    return OperatorPolicy(spec)
