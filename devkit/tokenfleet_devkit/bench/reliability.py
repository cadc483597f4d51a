"""`tokenfleet bench reliability`: overload a real fleet, and report it with the fault and fuzz tests.

Overload: sim-backend workers behind a real router, as local processes (reliability_overload);
their capacity is measured, then a burst of 10x that capacity runs for 60 s. Reported: requests
accepted/completed/failed and refused with 429 (and whether each 429 carried Retry-After), peak RSS
of the router and of every worker, and replicas before/after. The operator's own policy, fed with
the router's view of the workers, decides the scale-ups, applied by starting worker processes: no
cluster, whose start-up alone takes minutes on a shared machine (the cluster's scale-up loop has
its end-to-end test in tests/operator/test_e2e_autoscaling.py).
Rows the fault and fuzz tests wrote to $TOKENFLEET_RELIABILITY_REPORT are merged into the table.

Prints tables and writes `results/reliability.json`; exits 1 when an overload invariant fails.
`--smoke` runs 5x capacity for 3 s against tight queue bounds, in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from tokenfleet_devkit.bench.reliability_fleet import FleetOptions
from tokenfleet_devkit.bench.reliability_overload import OverloadOptions, run_overload
from tokenfleet_devkit.bench.reliability_report import (
    memory_table,
    normalize,
    overload_row,
    read_test_rows,
    scenario_table,
)

REPORT_ENV = "TOKENFLEET_RELIABILITY_REPORT"
# Invariants a seconds-long smoke run cannot show: a started worker needs longer than the burst to join.
NOT_CHECKED_IN_SMOKE = frozenset({"fleet scaled up"})
# Unset flags take these; the smoke run's bounds are tight so that 5x for 3 s already overflows them.
DEFAULTS: dict[str, float] = {
    "factor": 10.0,
    "duration": 60.0,
    "max_tokens": 128,
    "max_held": 64,
    "queue_timeout": 5.0,
    "worker_max_waiting": 8,
}
SMOKE_DEFAULTS: dict[str, float] = {
    "factor": 5.0,
    "duration": 3.0,
    "max_tokens": 32,
    "max_held": 2,
    "queue_timeout": 0.5,
    "worker_max_waiting": 1,
}


def options_from_args(args: argparse.Namespace) -> OverloadOptions:
    fleet = FleetOptions(
        max_num_seqs=args.max_num_seqs,
        worker_max_waiting=args.worker_max_waiting,
        router_max_held=args.max_held,
        router_queue_timeout_s=args.queue_timeout,
    )
    options = OverloadOptions(
        factor=args.factor,
        duration_s=args.duration,
        workers=args.workers,
        max_workers=args.max_workers,
        max_tokens=args.max_tokens,
        fleet=fleet,
        keep_logs=args.logs,
    )
    if args.smoke:
        options = replace(options, capacity_probe_s=2.0)
    return options


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenfleet bench reliability", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--smoke", action="store_true", help="5x capacity for 3 s with tight queue bounds, in seconds")
    add("--factor", type=float, help="burst rate as a multiple of capacity (default 10)")
    add("--duration", type=float, help="seconds of burst (default 60)")
    add("--workers", type=int, default=2, help="workers at the start (default 2)")
    add("--max-workers", type=int, default=4, help="the policy's maxReplicas; = --workers: no scaling")
    add("--max-tokens", type=int, help="tokens generated per request (default 128, smoke 32)")
    add("--max-num-seqs", type=int, default=4, help="each worker's running batch (default 4)")
    add("--worker-max-waiting", type=int, help="each worker's queue bound (default 8)")
    add("--max-held", type=int, help="the router's bounded queue (default 64)")
    add("--queue-timeout", type=float, help="seconds the router holds a request (default 5)")
    add("--no-overload", action="store_true", help="only merge and print the tests' report")
    add("--report", type=Path, default=None, help=f"tests' JSON lines (default ${REPORT_ENV})")
    add("--logs", type=Path, default=None, help="keep the processes' logs here (default: a temp dir)")
    add("--results", type=Path, default=Path("results"))
    return p


def merged_rows(
    figures: dict[str, Any] | None, unchecked: frozenset[str], report: Path | None, console: Console
) -> list[dict[str, Any]]:
    rows = [overload_row(figures, unchecked)] if figures else []
    if report is None:
        return rows
    if not report.is_file():
        console.print(f"[yellow]no test report at {report}: fault and fuzz rows left out[/yellow]")
        return rows
    test_rows, skipped = read_test_rows(report)
    if skipped:
        console.print(f"[yellow]{report}: {skipped} line(s) were not scenario objects, skipped[/yellow]")
    return rows + [normalize(row, "tests") for row in test_rows]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, value in (SMOKE_DEFAULTS if args.smoke else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    console = Console(width=max(Console().width, 120))
    started = time.monotonic()
    figures = None
    if not args.no_overload:
        figures = run_overload(options_from_args(args), say=lambda line: console.print(line, highlight=False))
    report = args.report or (Path(os.environ[REPORT_ENV]) if os.environ.get(REPORT_ENV) else None)
    unchecked = NOT_CHECKED_IN_SMOKE if args.smoke else frozenset()
    rows = merged_rows(figures, unchecked, report, console)
    console.print(scenario_table(rows))
    checked: dict[str, bool] = {}
    if figures:
        console.print(memory_table(figures))
        console.print(
            f"replicas {figures['replicas_before']} -> {figures['replicas_after']}"
            f" ({len(figures['scale_events'])} scale-up decision(s) by the operator's policy)"
        )
        load = figures["requests"]
        console.print(
            f"client: sent {load['sent']} ({load['sent_per_second'] or 0:.1f}/s achieved), 503 "
            f"{load['rejected_503']}, unreached {load['unreached']}, not sent {load['not_sent']}; "
            f"router's own count: {figures['router_answers']}; client loop stalled up to "
            f"{load['client_max_loop_lag_s']:.1f}s, load average {figures['machine']['load_1m_after']:.1f} "
            f"on {figures['machine']['cpus']} CPUs",
            highlight=False,
        )
        for claim, ok in figures["invariants"].items():
            status = "met" if ok else "[red]MISSED[/red]"
            console.print(f"{'[dim]not checked (smoke)[/dim]' if claim in unchecked else status}  {claim}")
            if claim not in unchecked:
                checked[claim] = ok
    fuzz = next((r for r in rows if r["scenario"] == "fuzz"), None)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "reliability.json"
    out.write_text(
        json.dumps(
            {
                "smoke": args.smoke,
                "overload": figures,
                "scenarios": rows,
                "unchecked_invariants": sorted(unchecked),
                "fuzz_cases": fuzz["cases"] if fuzz else None,
                "test_report": str(report) if report else None,
                "seconds": time.monotonic() - started,
            },
            indent=2,
            default=str,
        )
    )
    console.print(f"wrote {out}")
    return 0 if all(checked.values()) else 1
