"""`tokenfleet bench sim-validation`: the same trace excerpt through the real fleet and the simulator.

The real fleet runs first, `--repeats` times (local control plane, real operator and router,
sim-backend workers; see sim_validation_fleet.py); the median of its measured pod cold starts then goes
into the simulator, which runs the same arrivals, spec and engine profile (validation_setup.py) as
many times, each with the operator's ticks at another phase against the arrivals. Each side's runs are
pooled and compared; the comparison and its metrics are defined in tokenfleet_devkit/sim/validation.py.
Diagnostic sim runs, one per real run, get two more measurements of it: each added pod's own cold start
and the operator's actual tick period. Prints a table and
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
from tokenfleet_devkit.bench.sim_validation_fleet import FleetRun, RealFleet, Say
from tokenfleet_devkit.cluster import control_plane
from tokenfleet_devkit.demo.install import REPO, InstallError
from tokenfleet_devkit.sim.validation import TOLERANCE, compare, pool
from tokenfleet_devkit.sim.validation_setup import ExcerptOptions, ValidationSetup, plan_arrivals
from tokenfleet_devkit.sim.validation_sim import SimRun, run_sim

NAME = "sim-validation"
DEFAULT_CLUSTER = "tokenfleet-simval"
FULL = ExcerptOptions()
SMOKE = ExcerptOptions(start_s=570.0, duration_s=25.0, rate_scale=0.1)
FULL_SETTLE_S = 30.0
SMOKE_SETTLE_S = 8.0
GRACE_S = 60.0  # after the window, how long the last answers may take (both sides)
# One run is one draw of where ticks and scrapes fall against the arrivals: the sim alone gives a TTFT
# p95 of 2.1-3.5 s for this excerpt over eight tick phases. Pooled runs of each side are compared.
FULL_REPEATS = 3
SMOKE_REPEATS = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"tokenfleet bench {NAME}", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--smoke", action="store_true", help="25 s of trace at a low rate: checks the pipeline in ~1 min")
    add("--cluster-name", default=DEFAULT_CLUSTER, help=f"local cluster (default {DEFAULT_CLUSTER})")
    add("--namespace", help="namespace for the fleet, -N appended per run (default simval-<random>)")
    add("--start", type=float, help="excerpt start, trace seconds")
    add("--duration", type=float, help="excerpt length, seconds (played at real speed)")
    add("--rate-scale", type=float, help="fraction of the excerpt's requests kept")
    add("--settle", type=float, help="seconds compared after the excerpt ends")
    add("--tolerance", type=float, default=TOLERANCE, help="agreement bound on each metric (0.15)")
    add(
        "--repeats",
        type=int,
        help=f"runs of each side, pooled (default {FULL_REPEATS}; {SMOKE_REPEATS} with --smoke)",
    )
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


def _replay_real(
    args: argparse.Namespace, setup: ValidationSetup, window_s: float, work_dir: Path, say: Say
) -> list[FleetRun]:
    """The arrivals through the real fleet `args.repeats` times, each in a fresh namespace of one
    cluster (started here and stopped afterwards when none was running)."""
    paths = control_plane.Paths.default(args.cluster_name)
    own_cluster = not control_plane.is_running(paths)
    if own_cluster:
        control_plane.up(say=say, paths=paths)
    runs = []
    try:
        for i in range(args.repeats):
            namespace = f"{args.namespace}-{i + 1}" if args.namespace else f"simval-{uuid.uuid4().hex[:6]}"
            run_dir = work_dir / f"run-{i + 1}"
            run_dir.mkdir(parents=True, exist_ok=True)
            fleet = RealFleet(args.cluster_name, namespace, run_dir, say)
            try:
                address, prompts = fleet.start(setup)
                say(f"run {i + 1}/{args.repeats}: replaying {window_s:.0f} s through the real fleet")
                runs.append(fleet.replay(setup, address, prompts, window_s, GRACE_S))
            finally:
                fleet.close()
    finally:
        if own_cluster:
            control_plane.down(say=say, paths=paths)
    return runs


def _phase(tick_s: float, k: int, repeats: int) -> float:
    """The k-th run's first tick: the runs' first ticks spread evenly over one tick period."""
    return tick_s * (k + 1) / repeats


def _calibrated_sims(
    setup: ValidationSetup, reals: list[FleetRun], cold_start_s: float, window_s: float
) -> list[SimRun]:
    """Diagnostic, not the validation: one sim per real run, given two timings measured on it that one
    setup cannot hold: each added pod's own cold start (in order of creation) and the operator's tick
    period (it waits an interval after each tick, so its period is the interval plus the tick's time)."""
    sims = []
    for i, real in enumerate(reals):
        tick = real.tick_period_s or float(setup.fleet.interval_s)
        phase = _phase(tick, i, len(reals))
        sims.append(
            run_sim(
                setup, cold_start_s, window_s, GRACE_S, tick, real.added_cold_starts_s, first_tick_s=phase
            )
        )
    return sims


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    options, settle_s = excerpt_options(args)
    setup = ValidationSetup(plan_arrivals(traces.load_azure_code(), options))
    window_s = options.duration_s + settle_s
    work_dir = args.results_dir / NAME
    work_dir.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        console.print(f"[bold cyan]{NAME}[/] {line}", highlight=False)

    workload = options.describe("azure-code")
    say(f"{len(setup.arrivals)} arrivals: {workload}; {args.repeats} run(s) a side")
    reals = _replay_real(args, setup, window_s, work_dir, say)
    measured = sorted(c for r in reals for c in r.cold_starts_s)
    if not measured:
        raise InstallError("no worker pod turned Ready: no cold start to give the simulator")
    cold_start_s = statistics.median(measured)
    # The sim's runs differ only in where the operator's ticks fall against the arrivals, as the
    # real runs do (among other things).
    tick = float(setup.fleet.interval_s)
    sims = [
        run_sim(setup, cold_start_s, window_s, GRACE_S, first_tick_s=_phase(tick, k, args.repeats))
        for k in range(args.repeats)
    ]
    real_pool, sim_pool = pool("real", [r.record for r in reals]), pool("sim", [s.record for s in sims])
    comparison = compare(real_pool, sim_pool, args.tolerance)
    calibrated = _calibrated_sims(setup, reals, cold_start_s, window_s)
    calibrated_pool = pool("sim", [c.record for c in calibrated])
    return {
        **report.setup_dict(setup, workload, cold_start_s, measured),
        "repeats": args.repeats,
        "real": report.real_dict(setup, reals, real_pool, window_s),
        "sim": report.sim_dict(sims, sim_pool, window_s),
        "comparison": report.comparison_dict(comparison),
        "sim_calibrated": report.sim_dict(calibrated, calibrated_pool, window_s),
        "comparison_calibrated": report.comparison_dict(compare(real_pool, calibrated_pool, args.tolerance)),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats is None:
        args.repeats = SMOKE_REPEATS if args.smoke else FULL_REPEATS
    if args.repeats < 1:
        Console().print("[red]error:[/] --repeats must be at least 1")
        return 2
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
