"""The sim-validation report: JSON-ready dicts and the rich table (pure: runs in, data out).

Besides the comparison itself it records what explains a disagreement: the client's lag behind the
trace's schedule (a starved load generator invalidates the run), TPOT at the client on both sides (how
much slower the real workers step than their profile says), the operator's tick period, each pod's
cold start, the operator's view each second, and the simulator's timeline.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.table import Table

from tokenfleet_devkit.bench.sim_validation_fleet import FleetRun
from tokenfleet_devkit.sim.metrics import percentile
from tokenfleet_devkit.sim.validation import Comparison, RunRecord, integral
from tokenfleet_devkit.sim.validation_setup import ValidationSetup
from tokenfleet_devkit.sim.validation_sim import SimRun

MAX_SEND_LAG_S = 1.0  # a client further behind the schedule than this did not replay the trace


def real_tpots(fleet: FleetRun) -> list[float]:
    """Time per output token after the first, seen at the client, of every served request."""
    return [
        (r.latency_s - r.ttft_s) / (r.output_tokens - 1)
        for r in fleet.results
        if r.is_ok and r.latency_s is not None and r.ttft_s is not None and r.output_tokens > 1
    ]


def sim_tpots(sim: SimRun) -> list[float]:
    return [t for r in sim.result.requests if r.output_tokens > 1 and (t := r.tpot) is not None]


def send_lag_p95(setup: ValidationSetup, fleet: FleetRun) -> float | None:
    planned = [a.at_s for a in setup.arrivals]
    return percentile([r.sent_s - planned[r.index] for r in fleet.results], 95)


def _side(record: RunRecord, window_s: float) -> dict[str, Any]:
    return {
        "requests": record.num_requests,
        "served": record.num_served,
        "ttft_p50_s": record.ttft_p50_s,
        "ttft_p95_s": record.ttft_p95_s,
        "replica_seconds": integral(record.ready, window_s),
        "peak_ready": max((v for _, v in record.ready), default=0.0),
        "ready_curve": [[round(t, 2), v] for t, v in record.ready],
    }


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    return {
        "window_s": comparison.window_s,
        "ttft_p95_relative_difference": comparison.ttft_p95_relative_difference,
        "replica_curve_error": comparison.replica_curve_error,
        "replica_seconds_ratio": comparison.replica_seconds_ratio,
        "tolerance": comparison.tolerance,
        "checks": comparison.checks,
        "is_agreeing": comparison.is_agreeing,
    }


def real_dict(setup: ValidationSetup, fleet: FleetRun, window_s: float) -> dict[str, Any]:
    failures: dict[str, int] = {}
    for r in fleet.results:
        if not r.is_ok:
            failures[r.error or "?"] = failures.get(r.error or "?", 0) + 1
    lag = send_lag_p95(setup, fleet)
    return {
        **_side(fleet.record, window_s),
        "failures": failures,
        "sampler_errors": fleet.sampler_errors,
        "client_send_lag_p95_s": lag,
        "is_schedule_kept": lag is not None and lag <= MAX_SEND_LAG_S,
        "tpot_p50_s": percentile(real_tpots(fleet), 50),
        "operator_ticks": None if fleet.ticks is None else asdict(fleet.ticks),
        "operator_tick_period_s": fleet.tick_period_s,
        "timeline_columns": ["t_s", "ready", "pods", "desired", "queue_depth"],
        "timeline": [[round(x.t_s, 2), x.ready, x.pods, x.desired, x.queue_depth] for x in fleet.samples],
        "requests_columns": ["sent_s", "ttft_s"],
        "requests_detail": [
            [round(r.sent_s, 3), None if r.ttft_s is None else round(r.ttft_s, 3)] for r in fleet.results
        ],
    }


def sim_dict(sim: SimRun, window_s: float) -> dict[str, Any]:
    rejected: dict[str, int] = {}
    for r in sim.result.requests:
        if r.reject_reason is not None:
            rejected[r.reject_reason] = rejected.get(r.reject_reason, 0) + 1
    return {
        **_side(sim.record, window_s),
        "rejected": rejected,
        "tpot_p50_s": percentile(sim_tpots(sim), 50),
        "timeline_columns": ["t_s", "ready", "starting", "desired", "router_held"],
        "timeline": [
            [p.time, sum(p.ready.values()), sum(p.starting.values()), sum(p.desired.values()), p.held]
            for p in sim.result.timeline
        ],
        "requests_columns": ["arrival_s", "ttft_s"],
        "requests_detail": [
            [round(r.arrival, 3), None if r.ttft is None else round(r.ttft, 3)] for r in sim.result.requests
        ],
    }


def setup_dict(setup: ValidationSetup, workload: str, cold_start_s: float, fleet: FleetRun) -> dict[str, Any]:
    return {
        "workload": workload,
        "num_arrivals": len(setup.arrivals),
        "fleet": asdict(setup.fleet),
        "engine_profile": setup.profile.to_dict(),
        "kv_capacity_tokens": setup.kv_capacity_tokens,
        "cold_start": {
            "fed_to_sim_s": cold_start_s,
            "measured_s": fleet.cold_starts_s,
            "how": "median over the worker pods added during the replay: creationTimestamp -> Ready",
        },
    }


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _versus(cmp: dict[str, Any], key: str, check: str, pattern: str) -> list[str]:
    value = cmp[key]
    return ["-" if value is None else pattern.format(value), "yes" if cmp["checks"][check] else "NO"]


def table(data: dict[str, Any]) -> Table:
    """Real fleet, simulator (the validation) and the simulator given the real run's measured timings."""
    real, sim, cal = data["real"], data["sim"], data["sim_calibrated"]
    cmp, cal_cmp = data["comparison"], data["comparison_calibrated"]
    cold_start = data["cold_start"]["fed_to_sim_s"]
    t = Table(title=f"sim validation: {data['workload']}; cold start {cold_start:.1f} s")
    overhead = f"sim, pods' own cold starts, tick {cal['tick_period_s']:.2f} s"
    for column in (
        "metric",
        "real fleet",
        "simulator",
        "sim vs real",
        "within",
        overhead,
        "vs real",
        "within",
    ):
        t.add_column(column, justify="left" if column == "metric" else "right")

    def plain(label: str, values: list[str]) -> None:
        t.add_row(label, values[0], values[1], "", "", values[2], "", "")

    def compared(label: str, values: list[str], key: str, check: str, pattern: str) -> None:
        t.add_row(
            label,
            values[0],
            values[1],
            *_versus(cmp, key, check, pattern),
            values[2],
            *_versus(cal_cmp, key, check, pattern),
        )

    sides = (real, sim, cal)
    plain("served / requests", [f"{s['served']}/{s['requests']}" for s in sides])
    plain("TPOT p50", [_fmt(s["tpot_p50_s"], " s", 3) for s in sides])
    plain("TTFT p50", [_fmt(s["ttft_p50_s"], " s") for s in sides])
    compared(
        "TTFT p95",
        [_fmt(s["ttft_p95_s"], " s") for s in sides],
        "ttft_p95_relative_difference",
        "ttft_p95",
        "{:+.1%}",
    )
    compared("replica curve error", ["", "", ""], "replica_curve_error", "replica_curve", "{:.1%}")
    compared(
        "ready replica-seconds",
        [f"{s['replica_seconds']:.0f}" for s in sides],
        "replica_seconds_ratio",
        "replica_seconds",
        "{:.3f}x",
    )
    plain("peak ready replicas", [f"{s['peak_ready']:.0f}" for s in sides])
    return t
