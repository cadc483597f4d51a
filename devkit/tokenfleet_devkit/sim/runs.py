"""Running policies on a scenario and the fair threshold search: cheapest setting that meets the SLO.

Every run gets fresh requests built from the same trace records, so all policies see identical arrivals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tokenfleet_devkit import traces
from tokenfleet_devkit.sim import baselines, oracle
from tokenfleet_devkit.sim.adapters import OperatorPolicy, VariantPrice, fleet_spec
from tokenfleet_devkit.sim.fleet import SimConfig, SimResult, Simulation, VariantSetup
from tokenfleet_devkit.sim.metrics import Slo, is_within, summarize
from tokenfleet_devkit.sim.observation import Autoscaler
from tokenfleet_devkit.sim.scenarios import to_requests
from tokenfleet_devkit.sim.worker import EngineConfig

SLO_ATTAINMENT_TARGET = 0.99
# The oracle's per-minute runs (minute_misses) start this many minutes early, so that a minute's
# requests share the replicas with the long requests of the minutes before, as in the full run.
MISS_WARMUP_MINUTES = 2
# Full runs the oracle may spend repairing its hindsight plan where long requests outlast that warm-up.
REPAIR_ROUNDS = 6


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


@dataclass
class OracleSearch:
    """The oracle's search over both plan families (oracle.py), with each tried setting's plan."""

    search: Search
    plans: dict[str, list[int]]
    by_utilisation: Run  # the cheapest utilisation plan meeting the SLO (or the closest)

    @property
    def best_plan(self) -> list[int]:
        return self.plans[self.search.best.setting]


def minute_misses(bench: Bench, variant: str, cap: int) -> list[list[int]]:
    """Per minute, its requests left out of the SLO when the trace from `MISS_WARMUP_MINUTES` before it
    to its end runs on 1, 2, ... fresh replicas, up to the first size that misses none (or `cap`)."""
    minutes = max(1, math.ceil(bench.horizon_s / 60.0))
    by_minute: list[list[traces.TraceRecord]] = [[] for _ in range(minutes)]
    for r in bench.records:
        by_minute[min(int(r.arrival_s // 60.0), minutes - 1)].append(r)
    config = replace(bench.config, variants=tuple(v for v in bench.config.variants if v.name == variant))
    misses = []
    for m in range(minutes):
        first = max(0, m - MISS_WARMUP_MINUTES)
        offset = 60.0 * first
        records = [
            replace(r, arrival_s=r.arrival_s - offset) for k in range(first, m + 1) for r in by_minute[k]
        ]
        row: list[int] = []
        while not row or (row[-1] > 0 and len(row) < cap):
            n = len(row) + 1
            sim = Simulation(config, baselines.Static(variant, n), to_requests(records), {variant: n})
            own = [r for r in sim.run(60.0 * (m - first + 1)).requests if r.arrival >= 60.0 * m - offset]
            row.append(sum(1 for r in own if not is_within(r, bench.slo)))
        misses.append(row)
    return misses


@dataclass(frozen=True)
class _Family:
    """One oracle plan family: its parameter's name and range, and the plan for a value."""

    label: str
    make: Callable[[float], list[int]]
    low: float
    high: float
    cheaper_up: bool  # whether a higher value plans fewer replicas


def _try_plan(
    bench: Bench, variant: str, setting: str, plan: list[int], found: Search, plans: dict[str, list[int]]
) -> Run:
    """Run a plan, or return the earlier run of the same plan (a bisection's plans repeat once the
    parameter passes every minute's last step)."""
    same = next((r for r in found.tried if plans.get(r.setting) == plan), None)
    if same is not None:
        return same
    label = f"{setting} (peak {max(plan)})"
    plans[label] = plan
    run = bench.run(baselines.Schedule(variant, plan), label, {variant: plan[0]})
    found.tried.append(run)
    return run


def _bisect(
    bench: Bench, variant: str, family: _Family, steps: int, found: Search, plans: dict[str, list[int]]
) -> list[Run]:
    """Geometric bisection of the family's parameter for its cheapest plan meeting the SLO."""
    low, high = family.low, family.high
    runs = []
    for _ in range(steps):
        x = math.sqrt(low * high)
        run = _try_plan(bench, variant, f"{family.label}={x:.3g}", family.make(x), found, plans)
        runs.append(run)
        if run.meets_slo == family.cheaper_up:
            low = x
        else:
            high = x
    return runs


def _missed_by_minute(run: Run, slo: Slo, minutes: int) -> list[int]:
    missed = [0] * minutes
    for r in run.result.requests:
        if not is_within(r, slo):
            missed[min(int(r.arrival // 60.0), minutes - 1)] += 1
    return missed


def search_oracle(
    bench: Bench, variant: str, demand: Sequence[float], misses: Sequence[Sequence[int]], cap: int, steps: int
) -> OracleSearch:
    """Both plan families, each bisected geometrically for its cheapest plan meeting the SLO: the
    utilisation in [0.05, 2] (higher is cheaper) and the cost of a miss in [0.001, 100] replica-minutes
    (lower is cheaper); when no miss cost meets the SLO, up to `REPAIR_ROUNDS` repairs of the one
    closest to it."""
    found = Search("oracle")
    plans: dict[str, list[int]] = {}
    by_load = _Family("utilisation", lambda u: oracle.plan(demand, u, cap), 0.05, 2.0, cheaper_up=True)
    _bisect(bench, variant, by_load, steps, found, plans)
    by_utilisation = Search("oracle", list(found.tried)).best
    by_misses = _Family(
        "miss_cost", lambda c: oracle.plan_by_misses(misses, c, cap), 0.001, 100.0, cheaper_up=False
    )
    tried = _bisect(bench, variant, by_misses, steps, found, plans)
    run = Search("oracle", tried).best
    start = run.setting.split()[0]
    allowed = math.floor((1.0 - SLO_ATTAINMENT_TARGET) * len(bench.records))
    for k in range(1, REPAIR_ROUNDS + 1):
        if run.meets_slo:
            break
        plan = oracle.repair(plans[run.setting], _missed_by_minute(run, bench.slo, len(misses)), allowed, cap)
        run = _try_plan(bench, variant, f"{start} repaired={k}", plan, found, plans)
    return OracleSearch(found, plans, by_utilisation)


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
