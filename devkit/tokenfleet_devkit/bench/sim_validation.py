"""`tokenfleet bench sim-validation`: the same trace excerpt through the real fleet and the simulator.

The real fleet runs first (local control plane, real operator and router, sim-backend workers; see
sim_validation_fleet.py); its measured pod cold start then goes into the simulator, which runs the same
arrivals, spec and engine profile (validation_setup.py). The comparison and its metrics are defined in
tokenfleet_devkit/sim/validation.py. A second, diagnostic sim run gets two more measurements of the
real run: each added pod's own cold start and the operator's actual tick period. Prints a table and
writes results/sim-validation.json; exits 1 only when a side did not serve every request (disagreement
is a finding, not a crash). A run whose client fell more than 1 s behind the trace is flagged
(`is_schedule_kept`): its machine was too busy to replay the trace.

Uses the cluster named by --cluster-name when it runs (in a fresh namespace, removed afterwards),
otherwise starts it and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from tokenfleet_devkit import traces
from tokenfleet_devkit.bench import sim_validation_report as report
from tokenfleet_devkit.bench.sim_validation_fleet import RealFleet
from tokenfleet_devkit.cluster import control_plane
from tokenfleet_devkit.demo.install import REPO, InstallError
from tokenfleet_devkit.sim.validation import TOLERANCE, compare
from tokenfleet_devkit.sim.validation_setup import ExcerptOptions, ValidationSetup, plan_arrivals
from tokenfleet_devkit.sim.validation_sim import run_sim

NAME = "sim-validation"
DEFAULT_CLUSTER = "tokenfleet-simval"
FULL = ExcerptOptions()
SMOKE = ExcerptOptions(start_s=570.0, duration_s=25.0, rate_scale=0.1)
FULL_SETTLE_S = 30.0
SMOKE_SETTLE_S = 8.0
GRACE_S = 60.0  # after the window, how long the last answers may take (both sides)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"tokenfleet bench {NAME}", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--smoke", action="store_true", help="25 s of trace at a low rate: checks the pipeline in ~1 min")
    add("--cluster-name", default=DEFAULT_CLUSTER, help=f"local cluster (default {DEFAULT_CLUSTER})")
    add("--namespace", help="namespace for the fleet (default simval-<random>)")
    add("--start", type=float, help="excerpt start, trace seconds")
    add("--duration", type=float, help="excerpt length, seconds (played at real speed)")
    add("--rate-scale", type=float, help="fraction of the excerpt's requests kept")
    add("--settle", type=float, help="seconds compared after the excerpt ends")
    add("--tolerance", type=float, default=TOLERANCE, help="agreement bound on each metric (0.15)")
    add("--results-dir", type=Path, default=REPO / "results")
    return p


def excerpt_options(args: argparse.Namespace) -> tuple[ExcerptOptions, float]:
    base, settle = (SMOKE, SMOKE_SETTLE_S) if args.smoke else (FULL, FULL_SETTLE_S)
    options = replace(
        base,
        start_s=base.start_s if args.start is None else args.start,
        duration_s=base.duration_s if args.duration is None else args.duration,
        rate_scale=base.rate_scale if args.rate_scale is None else args.rate_scale,
    )
    return options, settle if args.settle is None else args.settle


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    options, settle_s = excerpt_options(args)
    setup = ValidationSetup(plan_arrivals(traces.load_azure_code(), options))
    window_s = options.duration_s + settle_s
    work_dir = args.results_dir / NAME
    work_dir.mkdir(parents=True, exist_ok=True)
    namespace = args.namespace or f"simval-{uuid.uuid4().hex[:6]}"

    def say(line: str) -> None:
        console.print(f"[bold cyan]{NAME}[/] {line}", highlight=False)

    workload = options.describe("azure-code")
    say(f"{len(setup.arrivals)} arrivals: {workload}")
    fleet = RealFleet(args.cluster_name, namespace, work_dir, say)
    try:
        address, prompts = fleet.start(setup)
        say(f"replaying {window_s:.0f} s through the real fleet")
        real = fleet.replay(setup, address, prompts, window_s, GRACE_S)
    finally:
        fleet.close()
    if not real.cold_starts_s:
        raise InstallError("no worker pod turned Ready: no cold start to give the simulator")
    cold_start_s = statistics.median(real.cold_starts_s)
    sim = run_sim(setup, cold_start_s, window_s, GRACE_S)
    comparison = compare(real.record, sim.record, args.tolerance)
    # Diagnostic, not the validation: the same sim given two timings measured on the real fleet that one
    # setup cannot hold: each added pod's own cold start (in order of creation) and the operator's tick
    # period (it waits an interval after each tick, so its period is the interval plus the tick's time).
    calibrated = run_sim(setup, cold_start_s, window_s, GRACE_S, real.tick_period_s, real.added_cold_starts_s)
    calibrated_comparison = compare(real.record, calibrated.record, args.tolerance)
    return {
        **report.setup_dict(setup, workload, cold_start_s, real),
        "real": report.real_dict(setup, real, window_s),
        "sim": report.sim_dict(sim, window_s),
        "comparison": report.comparison_dict(comparison),
        "sim_calibrated": {
            **report.sim_dict(calibrated, window_s),
            "tick_period_s": calibrated.config.interval_s,
            "cold_starts_s": real.added_cold_starts_s,
        },
        "comparison_calibrated": report.comparison_dict(calibrated_comparison),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        data = run(args, console)
    except (InstallError, control_plane.ClusterError, traces.TraceMissing) as err:
        console.print(f"[red]error:[/] {err}", highlight=False)
        return 1
    data["smoke"] = bool(args.smoke)
    console.print(report.table(data))
    if not data["real"]["is_schedule_kept"]:
        lag = data["real"]["client_send_lag_p95_s"]
        console.print(
            f"[red]warning:[/] the client fell {lag:.1f} s behind the trace (p95): the machine is too busy"
        )
    path = args.results_dir / f"{NAME}.json"
    path.write_text(json.dumps(data, indent=2))
    verdict = "agree" if data["comparison"]["is_agreeing"] else "DISAGREE"
    console.print(f"real fleet and simulator {verdict} within {args.tolerance:.0%}; wrote {path}")
    is_complete = all(data[side]["served"] == data[side]["requests"] for side in ("real", "sim"))
    return 0 if is_complete else 1


if __name__ == "__main__":
    sys.exit(main())
