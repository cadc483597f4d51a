"""One benchmark scenario end to end: oracle, tuned baselines, tokenfleet, the accelerator mix, targets.

Order matters: the smallest static fleet meeting the SLO caps the oracle (perfect foresight never needs
more), and the oracle's per-minute plan defines "enough capacity" for the worst-lag metric and gives the
baselines' search grids a scale. Runs before the oracle (static) report no lag: they never lack capacity.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tokenfleet_devkit.sim import baselines, oracle
from tokenfleet_devkit.sim.fleet import SimConfig, VariantSetup
from tokenfleet_devkit.sim.metrics import worst_lag
from tokenfleet_devkit.sim.observation import Autoscaler
from tokenfleet_devkit.sim.perf_model import gpu_model
from tokenfleet_devkit.sim.request import SimRequest
from tokenfleet_devkit.sim.runs import (
    Bench,
    Run,
    Search,
    Setting,
    minute_misses,
    run_setting,
    search_oracle,
    search_static,
    setting_value,
    tokenfleet_policy,
)
from tokenfleet_devkit.sim.scenarios import Scenario, to_requests
from tokenfleet_devkit.sim.worker import EngineConfig

BASELINES = ("static-peak", "hpa-rps", "keda-waiting", "knative-kpa")


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    num_requests: int
    horizon_s: float
    searches: list[Search] = field(default_factory=list)
    mix: dict[str, Run] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def best(self, policy: str) -> Run | None:
        return next((s.best for s in self.searches if s.policy == policy), None)


def _variant(name: str) -> VariantSetup:
    perf = gpu_model(name)
    return VariantSetup(name, perf, perf.hardware.hourly_cost)


# Share of the TPOT target given to the workers as spec.engine.decodeStepTargetMs, as the README
# recommends: steps that carry decodes stay under it with room for the p95.
DECODE_STEP_TARGET_SHARE = 0.8


def engine_for(scenario: Scenario) -> EngineConfig:
    return EngineConfig(
        decode_step_target_s=DECODE_STEP_TARGET_SHARE * scenario.slo.tpot_p95_s,
        scheduling_policy=scenario.scheduling_policy,
    )


def engine_summary(scenario: Scenario) -> str:
    """The workers' engine settings in spec terms, for the report."""
    engine = engine_for(scenario)
    target = engine.decode_step_target_s or 0.0
    return f"decodeStepTargetMs {1000 * target:g}, schedulingPolicy {engine.scheduling_policy}"


def run_scenario(scenario: Scenario, smoke: bool, with_mix: bool) -> ScenarioOutcome:
    records = scenario.load()
    horizon = math.ceil(max((r.arrival_s for r in records), default=60.0) / 60.0) * 60.0
    h100 = _variant("h100")
    config = SimConfig(variants=(h100,), engine=engine_for(scenario), interval_s=scenario.interval_s)
    bench = Bench(records, scenario.slo, config, horizon)
    outcome = ScenarioOutcome(scenario, len(records), horizon)
    demand = oracle.demand_per_minute(
        to_requests(records), h100.perf, config.engine.max_batched_tokens, horizon
    )

    high = max(oracle.plan(demand, 0.3)) * 2 + 2
    found_static = search_static(bench, "h100", 1, max(oracle.plan(demand, 0.6)) + 1 if smoke else high)
    cap = int(setting_value(found_static.best))
    misses = minute_misses(bench, "h100", cap)
    searched = search_oracle(bench, "h100", demand, misses, cap, 1 if smoke else scenario.search_points + 1)
    found_oracle = searched.search
    bench.need_per_minute = searched.best_plan
    # The same plan with cold starts: what perfect foresight saves once replicas start slowly.
    cold = baselines.ColdStartSchedule("h100", bench.need_per_minute, h100.cold_start_s)
    found_cold = Search("oracle-cold-start", [bench.run(cold, found_oracle.best.setting)])
    outcome.searches += [found_oracle, found_cold, found_static]
    for run in found_oracle.tried + found_static.tried:  # run before the plan existed
        run.summary["worst_lag_s"] = worst_lag(run.result.timeline, bench.need_per_minute)

    # The baselines' grids take their scale from the load-proportional plan: requests per second per
    # replica it plans.
    scale_plan = searched.plans[searched.by_utilisation.setting]
    rps_per_replica = len(records) / horizon / (sum(scale_plan) / len(scale_plan))
    floors = _floors(cap, smoke)
    lean = 0 if smoke else MAX_EXTENSIONS
    factors = _grid([1.0, 0.7, 1.4, 0.5], smoke, scenario)
    knobs = (
        ("hpa-rps", Knob("rps/replica={:.2f}", [rps_per_replica * f for f in factors], 1.4, _hpa)),
        (
            "keda-waiting",
            Knob("waiting/replica={:g}", _grid([4.0, 8.0, 2.0, 16.0], smoke, scenario), 2.0, _keda),
        ),
        ("knative-kpa", Knob("concurrency={:g}", _grid([16.0, 32.0, 8.0, 64.0], smoke, scenario), 2.0, _kpa)),
        (
            "tokenfleet",
            Knob(
                "queueDepthPerReplica={:g}",
                _grid([4.0, 2.0, 8.0, 1.0], smoke, scenario),
                2.0,
                functools.partial(_tokenfleet, config.variants, scenario),
            ),
        ),
    )
    for policy, knob in knobs:
        outcome.searches.append(search_knob(policy, knob, floors, bench, lean))
    if with_mix and scenario.with_mix:
        unfloored = [r for r in outcome.searches[-1].tried if _tokenfleet_setting(r.setting)[1] == 1]
        outcome.mix = _mix(bench, scenario, Search("tokenfleet", unfloored).best)
    outcome.targets = check_targets(outcome)
    return outcome


def _floors(peak_replicas: int, smoke: bool) -> list[int]:
    """minReplicas tried with every threshold: none, and half the peak fleet, the floor a user who
    knows the traffic comes in bursts would set (every autoscaler here takes one, as HPA, KEDA and
    Knative do). Bursts shorter than a cold start are served by what already runs."""
    half = math.ceil(peak_replicas / 2)
    return [1] if smoke or half <= 1 else [1, half]


@dataclass(frozen=True)
class Knob:
    """An autoscaler's threshold: its label (a format with one field), the values tried first (most
    promising first), the factor that makes it provision less, and how to build the autoscaler at
    a value and a minReplicas floor."""

    label: str
    values: list[float]
    leaner: float
    build: Callable[[float, int], Autoscaler]


# Steps tried past the grid's leanest value while it still meets the SLO: a grid whose leanest
# point meets the SLO has not found the policy's cheapest setting yet (with a floor, HPA met it
# at 1.4x the grid's largest rate target).
MAX_EXTENSIONS = 3


def search_knob(policy: str, knob: Knob, floors: list[int], bench: Bench, extensions: int) -> Search:
    """At each floor: the knob's values, then leaner values while the leanest still meets the SLO,
    then one value halfway (geometrically) between the leanest that met it and the next leaner
    one that did not."""
    found = Search(policy)
    for floor in floors:
        suffix = "" if floor == 1 else f", minReplicas={floor}"

        def attempt(value: float, floor: int = floor, suffix: str = suffix) -> Run:
            setting = Setting(
                knob.label.format(value) + suffix, functools.partial(knob.build, value, floor), floor
            )
            run = run_setting(bench, setting)
            found.tried.append(run)
            return run

        def leanness(value: float) -> float:
            return value if knob.leaner > 1 else -value

        runs = {value: attempt(value) for value in knob.values}
        value = max(knob.values, key=leanness)
        for _ in range(extensions):
            if not runs[value].meets_slo:
                break
            value *= knob.leaner
            runs[value] = attempt(value)
        met = [v for v, run in runs.items() if run.meets_slo]
        if extensions and met:
            best = max(met, key=leanness)
            leaner = [v for v, run in runs.items() if not run.meets_slo and leanness(v) > leanness(best)]
            if leaner:
                attempt(math.sqrt(best * min(leaner, key=leanness)))
    return found


def _grid(values: list[float], smoke: bool, scenario: Scenario) -> list[float]:
    """The first `search_points` settings (most promising first); one in smoke runs."""
    return values[:1] if smoke else values[: scenario.search_points]


def _hpa(target: float, floor: int) -> Autoscaler:
    return baselines.Hpa("h100", target, min_replicas=floor)


def _keda(target: float, floor: int) -> Autoscaler:
    return baselines.Keda("h100", target, min_replicas=floor)


def _kpa(target: float, floor: int) -> Autoscaler:
    return baselines.Kpa("h100", target, min_replicas=floor)


def _tokenfleet(
    variants: tuple[VariantSetup, ...], scenario: Scenario, queue_target: float, floor: int
) -> Autoscaler:
    overrides = {"targets": {"queueDepthPerReplica": queue_target}, "minReplicas": floor}
    return tokenfleet_policy(variants, scenario.slo, scenario.interval_s, overrides, engine_for(scenario))


def declared(variant: VariantSetup, requests: list[SimRequest], max_batched_tokens: int) -> VariantSetup:
    """The variant with the full-load throughput a benchmark of this workload on it would report, as
    users declare it (spec.accelerators[].tokensPerSecond) so that the policy can rank an accelerator
    it has not measured yet."""
    rate = oracle.full_load_tokens_per_second(requests, variant.perf, max_batched_tokens)
    return replace(variant, tokens_per_second=round(rate, 1))


def _tokenfleet_setting(label: str) -> tuple[float, int]:
    """The queue target and floor of a tokenfleet search label such as
    `queueDepthPerReplica=2, minReplicas=4`."""
    values = dict(part.split("=") for part in label.split(", "))
    return float(values["queueDepthPerReplica"]), int(values.get("minReplicas", 1))


def _mix(bench: Bench, scenario: Scenario, best_h100: Run | None) -> dict[str, Run]:
    """tokenfleet on H100 only (already run), L40S only, and both with the cost-aware placement; each
    variant declares the full-load throughput `declared` gives it, as a user would from a benchmark.
    All three without a floor: a minReplicas count is a different capacity on each accelerator."""
    setting = best_h100.setting if best_h100 else "queueDepthPerReplica=8"
    queue, _ = _tokenfleet_setting(setting)
    overrides = {"targets": {"queueDepthPerReplica": queue}}
    runs: dict[str, Run] = {}
    if best_h100 is not None:
        runs["h100"] = best_h100
    requests = to_requests(bench.records)
    for label, names in (("l40s", ("l40s",)), ("h100+l40s", ("h100", "l40s"))):
        variants = tuple(
            declared(_variant(n), requests, bench.config.engine.max_batched_tokens) for n in names
        )
        mixed = Bench(
            bench.records,
            bench.slo,
            SimConfig(variants=variants, engine=bench.config.engine, interval_s=scenario.interval_s),
            bench.horizon_s,
            bench.need_per_minute,
        )
        policy = tokenfleet_policy(
            variants, scenario.slo, scenario.interval_s, overrides, bench.config.engine
        )
        rates = ", ".join(f"{v.name} {v.tokens_per_second:.0f}" for v in variants)
        run_setting = f"{setting}; declared tok/s {rates}"
        runs[label] = mixed.run(policy, run_setting, {names[0]: bench.need_per_minute[0]})
    return runs


def _target(name: str, is_met: bool, detail: str) -> dict[str, Any]:
    return {"target": name, "met": is_met, "detail": detail}


def check_targets(outcome: ScenarioOutcome) -> list[dict[str, Any]]:
    tf, static, best_oracle = outcome.best("tokenfleet"), outcome.best("static-peak"), outcome.best("oracle")
    if tf is None or static is None or best_oracle is None:
        return []
    s = tf.summary
    results = [
        _target(
            "tokenfleet SLO attainment >= 99%",
            tf.meets_slo,
            f"{100 * float(s['slo_attainment']):.2f}%",
        )
    ]
    peak_h = float(static.summary["gpu_hours"])
    oracle_saving = peak_h - float(best_oracle.summary["gpu_hours"])
    tf_saving = peak_h - float(s["gpu_hours"])
    captured = tf_saving / oracle_saving if oracle_saving > 0 else 0.0
    cold = outcome.best("oracle-cold-start")
    bound = ""
    if cold is not None and oracle_saving > 0:
        cold_saving = peak_h - float(cold.summary["gpu_hours"])
        bound = (
            f"; the oracle with cold starts captures {100 * cold_saving / oracle_saving:.0f}% at "
            f"{100 * float(cold.summary['slo_attainment']):.2f}% SLO"
        )
    results.append(
        _target(
            "captures >= 70% of the oracle's GPU-hour saving over peak",
            captured >= 0.7 and tf.meets_slo,
            f"{100 * captured:.0f}% (oracle saves {oracle_saving:.1f} of {peak_h:.1f} GPU-h; "
            f"tokenfleet {tf_saving:.1f}{bound})",
        )
    )
    if outcome.scenario.is_bursty:
        tuned = [r for r in (outcome.best(p) for p in BASELINES) if r is not None and r.meets_slo]
        if tuned:
            cheapest = min(tuned, key=lambda r: float(r.summary["gpu_hours"]))
            ratio = float(s["gpu_hours"]) / float(cheapest.summary["gpu_hours"])
            results.append(
                _target(
                    ">= 10% fewer GPU-hours than the best tuned baseline",
                    ratio <= 0.9 and tf.meets_slo,
                    f"tokenfleet/{cheapest.policy} = {ratio:.2f}",
                )
            )
    if outcome.mix:
        mixed = outcome.mix.get("h100+l40s")
        singles = [r for k, r in outcome.mix.items() if k != "h100+l40s" and r.meets_slo]
        if mixed is not None:
            cheapest_single = min((float(r.summary["dollars"]) for r in singles), default=math.inf)
            results.append(
                _target(
                    "cost-aware H100+L40S mix cheaper than the best single type at the SLO",
                    mixed.meets_slo and float(mixed.summary["dollars"]) < cheapest_single,
                    f"mix ${float(mixed.summary['dollars']):.1f} "
                    f"(SLO {100 * float(mixed.summary['slo_attainment']):.1f}%) vs "
                    + (f"best single ${cheapest_single:.1f}" if singles else "no single type within the SLO"),
                )
            )
    return results
