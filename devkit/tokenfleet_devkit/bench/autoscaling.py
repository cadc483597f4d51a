"""`tokenfleet bench autoscaling`: tokenfleet's policy against tuned baselines and the oracle on real traces.

Prints a table per trace, the threshold search behind each baseline and whether each target of issue 9
is met, writes `results/autoscaling.json` and PNG plots under `results/`. `--smoke` runs minutes-long
excerpts with one setting per policy (a few seconds; what CI runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tokenfleet_devkit.sim.scenarios import SCENARIO_NAMES
from tokenfleet_devkit.traces import TraceMissing

POLICY_ORDER = (
    "static-peak",
    "hpa-rps",
    "keda-waiting",
    "knative-kpa",
    "tokenfleet",
    "oracle",
    "oracle-cold-start",
)


def _fmt(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def _table(title: str, rows: list[tuple[str, str, dict[str, Any]]]) -> Table:
    table = Table(title=title)
    for column in (
        "policy",
        "setting",
        "GPU-h",
        "$",
        "$/Mtok",
        "SLO %",
        "TTFT p50/p95/p99 s",
        "TPOT p50/p95/p99 ms",
        "scale events",
        "worst lag s",
        "rejected",
    ):
        table.add_column(column)
    for policy, setting, s in rows:
        table.add_row(
            policy,
            setting,
            _fmt(s["gpu_hours"]),
            _fmt(s["dollars"]),
            _fmt(s["dollars_per_mtok"], digits=3),
            _fmt(s["slo_attainment"], 100.0),
            "/".join(_fmt(s[k]) for k in ("ttft_p50_s", "ttft_p95_s", "ttft_p99_s")),
            "/".join(_fmt(s[k], 1000.0, 0) for k in ("tpot_p50_s", "tpot_p95_s", "tpot_p99_s")),
            str(s["scale_events"]),
            _fmt(s["worst_lag_s"], digits=0),
            str(sum(s["rejected"].values())),
        )
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenfleet bench autoscaling", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="short excerpts, one setting per policy")
    parser.add_argument(
        "--trace",
        action="append",
        choices=SCENARIO_NAMES,
        help="run only these scenarios (repeatable)",
    )
    parser.add_argument("--servegen-days", type=float, default=2.0)
    parser.add_argument("--no-mix", action="store_true", help="skip the H100+L40S cost-aware mix runs")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument(
        "--engine-results", type=Path, default=Path("results/engine.json"), help="CPU calibration"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from tokenfleet_devkit.sim import plots
    from tokenfleet_devkit.sim.benchmark import ScenarioOutcome, engine_summary, run_scenario
    from tokenfleet_devkit.sim.perf_model import cpu_model, gpu_model
    from tokenfleet_devkit.sim.scenarios import scenarios

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(width=200)
    args.results.mkdir(parents=True, exist_ok=True)
    cpu, cpu_source = cpu_model(args.engine_results)
    report: dict[str, Any] = {
        "smoke": args.smoke,
        "perf_models": {
            "h100": gpu_model("h100").describe(),
            "l40s": gpu_model("l40s").describe(),
            "cpu": {**cpu.describe(), "source": cpu_source},
        },
        "scenarios": {},
    }
    all_met = True
    for scenario in scenarios(args.servegen_days, smoke=args.smoke):
        if args.trace and scenario.name not in args.trace:
            continue
        started = time.monotonic()
        try:
            outcome: ScenarioOutcome = run_scenario(
                scenario, args.smoke, with_mix=not (args.no_mix or args.smoke)
            )
        except TraceMissing as err:
            console.print(f"[yellow]skipping {scenario.name}: {err}[/yellow]")
            report["scenarios"][scenario.name] = {"skipped": str(err)}
            continue
        elapsed = time.monotonic() - started
        rows = []
        for policy in POLICY_ORDER:
            run = outcome.best(policy)
            if run is not None:
                rows.append((policy, run.setting, run.summary))
        for label, run in outcome.mix.items():
            rows.append((f"tokenfleet ({label})", run.setting, run.summary))
        slo = scenario.slo
        console.print(
            _table(
                f"{scenario.name}: {outcome.num_requests} requests over {outcome.horizon_s / 3600:.1f} h; "
                f"SLO TTFT <= {slo.ttft_p95_s:g} s and TPOT <= {1000 * slo.tpot_p95_s:g} ms per request; "
                f"scaling: {scenario.scaling}; workers: {engine_summary(scenario)}",
                rows,
            )
        )
        for found in outcome.searches:
            tried = ", ".join(
                f"{t['setting']}: {t['gpu_hours']:.1f} GPU-h {100 * t['slo_attainment']:.1f}%"
                f"{'' if t['meets_slo'] else ' (misses)'}"
                for t in found.report()
            )
            console.print(f"  search {found.policy}: {tried} -> {found.best.setting}")
        for target in outcome.targets:
            all_met = all_met and bool(target["met"])
            mark = "[green]MET[/green]" if target["met"] else "[red]NOT MET[/red]"
            console.print(f"  target: {target['target']}: {mark} ({target['detail']})")
        console.print(f"  ({elapsed:.0f} s of simulation)")
        report["scenarios"][scenario.name] = {
            "scaling": scenario.scaling,
            "workers": engine_summary(scenario),
            "slo": {"ttft_s": slo.ttft_p95_s, "tpot_s": slo.tpot_p95_s, "attainment": 0.99},
            "requests": outcome.num_requests,
            "horizon_s": outcome.horizon_s,
            "policies": {policy: {"setting": setting, **summary} for policy, setting, summary in rows},
            "searches": {found.policy: found.report() for found in outcome.searches},
            "targets": outcome.targets,
            "simulation_seconds": elapsed,
        }
        if not args.no_plots:
            best_runs = [r for r in (outcome.best(p) for p in POLICY_ORDER) if r is not None]
            plots.replicas_over_time(
                scenario.name, best_runs, args.results / f"autoscaling_{scenario.name}_replicas.png"
            )
            plots.cost_vs_slo(
                scenario.name, outcome.searches, args.results / f"autoscaling_{scenario.name}_cost_slo.png"
            )
    out = args.results / "autoscaling.json"
    if args.trace and out.exists():
        # A run of some traces keeps the other traces' results from an earlier run.
        earlier = json.loads(out.read_text(encoding="utf-8")).get("scenarios", {})
        report["scenarios"] = {
            **{k: v for k, v in earlier.items() if k not in args.trace},
            **report["scenarios"],
        }
        all_met = all(t["met"] for s in report["scenarios"].values() for t in s.get("targets", []))
    report["all_targets_met"] = all_met
    out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    console.print(f"wrote {out}; all targets met: {all_met}")
    return 0
