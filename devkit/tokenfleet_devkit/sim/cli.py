"""`tokenfleet sim`: run one trace through the simulated fleet under one autoscaling policy.

Example: `tokenfleet sim --trace azure-code --policy tokenfleet --accelerator h100 --minutes 60`
prints the run's cost and latency summary and how long the simulation took; `--json PATH` writes the
summary and the replica timeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tokenfleet_devkit import traces
from tokenfleet_devkit.sim import baselines
from tokenfleet_devkit.sim.fleet import SimConfig, VariantSetup
from tokenfleet_devkit.sim.metrics import Slo
from tokenfleet_devkit.sim.observation import Autoscaler
from tokenfleet_devkit.sim.perf_model import cpu_model, gpu_model
from tokenfleet_devkit.sim.runs import Bench, tokenfleet_policy
from tokenfleet_devkit.sim.scenarios import AZURE, SCENARIO_NAMES, excerpt
from tokenfleet_devkit.sim.worker import EngineConfig
from tokenfleet_worker import admission

POLICIES = ("tokenfleet", "static", "hpa", "keda", "kpa")


def _records(name: str, minutes: float, rate_scale: float, length_scale: float) -> list[traces.TraceRecord]:
    if name == "azure-code":
        records = traces.load_azure_code()
    elif name == "mooncake-conversation":
        records = traces.load_mooncake()
    else:
        records = traces.servegen_requests(
            traces.load_servegen_rate(), traces.load_servegen_lengths(), minutes * 60.0, rate_scale, seed=7
        )
        rate_scale = 1.0  # already applied to the curve
    records = excerpt(records, 0.0, minutes * 60.0)
    if rate_scale != 1.0:
        records = traces.scale_rate(records, rate_scale)
    return traces.scale_lengths(records, length_scale) if length_scale != 1.0 else records


def _variant(name: str, engine_results: Path) -> VariantSetup:
    if name == "cpu":
        perf, _ = cpu_model(engine_results)
        return VariantSetup("cpu", perf, hourly_cost=0.2, cold_start_s=10.0)
    model = gpu_model(name)
    return VariantSetup(name, model, model.hardware.hourly_cost)


def _policy(args: argparse.Namespace, variants: tuple[VariantSetup, ...], slo: Slo) -> Autoscaler:
    first = variants[0].name
    if args.policy == "tokenfleet":
        overrides: dict[str, Any] = {"targets": {"queueDepthPerReplica": args.target}} if args.target else {}
        overrides["maxReplicas"] = args.max_replicas
        return tokenfleet_policy(variants, slo, args.interval, overrides)
    if args.policy == "static":
        return baselines.Static(first, args.replicas)
    target = args.target or {"hpa": 2.0, "keda": 2.0, "kpa": 16.0}[args.policy]
    if args.policy == "hpa":
        return baselines.Hpa(first, target, max_replicas=args.max_replicas)
    if args.policy == "keda":
        return baselines.Keda(first, target, max_replicas=args.max_replicas)
    return baselines.Kpa(first, target, max_replicas=args.max_replicas)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenfleet sim", description=__doc__)
    p.add_argument("--trace", choices=SCENARIO_NAMES, default=AZURE)
    p.add_argument("--policy", choices=POLICIES, default="tokenfleet")
    p.add_argument("--accelerator", action="append", choices=("h100", "l40s", "cpu"))
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rate-scale", type=float, default=1.0)
    p.add_argument("--length-scale", type=float, default=1.0)
    p.add_argument("--replicas", type=int, default=4, help="static fleet size and the initial size")
    p.add_argument("--max-replicas", type=int, default=64)
    p.add_argument(
        "--target", type=float, help="the policy's threshold (queue depth, rps, waiting, concurrency)"
    )
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--strategy", default="least-load", help="router strategy")
    p.add_argument(
        "--decode-step-target-ms",
        type=float,
        help="the workers' spec.engine.decodeStepTargetMs (default: unset, chunks fill the step budget)",
    )
    p.add_argument(
        "--scheduling-policy",
        choices=admission.POLICIES,
        default=admission.FCFS,
        help="the workers' spec.engine.schedulingPolicy (default fcfs)",
    )
    p.add_argument("--ttft-slo", type=float, default=2.0)
    p.add_argument("--tpot-slo", type=float, default=0.1)
    p.add_argument("--engine-results", type=Path, default=Path("results/engine.json"))
    p.add_argument("--json", type=Path, help="write the summary and timeline here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.minutes <= 0 or args.rate_scale <= 0 or args.length_scale <= 0:
        print("error: --minutes, --rate-scale and --length-scale must be positive", file=sys.stderr)
        return 2
    if args.decode_step_target_ms is not None and args.decode_step_target_ms <= 0:
        print("error: --decode-step-target-ms must be positive", file=sys.stderr)
        return 2
    try:
        records = _records(args.trace, args.minutes, args.rate_scale, args.length_scale)
    except traces.TraceMissing as err:
        print(f"skipping: {err}", file=sys.stderr)
        return 0
    names = tuple(args.accelerator or ["h100"])
    variants = tuple(
        VariantSetup(v.name, v.perf, v.hourly_cost, v.cold_start_s, args.max_replicas)
        for v in (_variant(n, args.engine_results) for n in names)
    )
    slo = Slo(args.ttft_slo, args.tpot_slo)
    target = None if args.decode_step_target_ms is None else args.decode_step_target_ms / 1000
    config = SimConfig(
        variants=variants,
        engine=EngineConfig(decode_step_target_s=target, scheduling_policy=args.scheduling_policy),
        interval_s=args.interval,
        strategy=args.strategy,
    )
    bench = Bench(records, slo, config, args.minutes * 60.0)
    started = time.monotonic()
    run = bench.run(_policy(args, variants, slo), args.policy, {names[0]: args.replicas})
    elapsed = time.monotonic() - started
    summary = {k: v for k, v in run.summary.items() if k != "worst_lag_s"}
    print(f"{args.trace}: {len(records)} requests, policy {args.policy}, {elapsed:.1f} s of simulation")
    for key, value in summary.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    if args.json:
        timeline = [{"time": p.time, "ready": p.ready, "starting": p.starting} for p in run.result.timeline]
        args.json.write_text(
            json.dumps({"summary": summary, "timeline": timeline}, indent=1), encoding="utf-8"
        )
    return 0
