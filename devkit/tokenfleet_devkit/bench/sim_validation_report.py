"""The sim-validation report: JSON-ready dicts and the rich table (pure: runs in, data out).

Besides the comparison itself it records what explains a disagreement: the client's lag behind the
trace's schedule (a starved load generator invalidates the run), TPOT at the client on both sides (how
much slower the real workers step than their profile says), the operator's tick period, each pod's
cold start, the operator's view each second, and the simulator's timeline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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


def _merged(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    return dict(sum((Counter(c) for c in counts), Counter()))


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def real_run_dict(setup: ValidationSetup, fleet: FleetRun, window_s: float) -> dict[str, Any]:
    """One real run: its own figures, the operator's view each second and every request's TTFT."""
    failures = Counter(r.error or "?" for r in fleet.results if not r.is_ok)
    lag = send_lag_p95(setup, fleet)
    return {
        **_side(fleet.record, window_s),
        "failures": dict(failures),
        "sampler_errors": fleet.sampler_errors,
        "client_send_lag_p95_s": lag,
        "is_schedule_kept": lag is not None and lag <= MAX_SEND_LAG_S,
        "tpot_p50_s": percentile(real_tpots(fleet), 50),
        "operator_ticks": None if fleet.ticks is None else asdict(fleet.ticks),
        "operator_tick_period_s": fleet.tick_period_s,
        "cold_starts_s": fleet.cold_starts_s,
        "creation_to_ready_s": fleet.creation_to_ready_s,
        "orders": [[round(o.at_s, 3), o.replicas] for o in fleet.orders],
        "timeline_columns": ["t_s", "ready", "pods", "desired", "queue_depth"],
        "timeline": [[round(x.t_s, 2), x.ready, x.pods, x.desired, x.queue_depth] for x in fleet.samples],
        "requests_columns": ["sent_s", "ttft_s"],
        "requests_detail": [
            [round(r.sent_s, 3), None if r.ttft_s is None else round(r.ttft_s, 3)] for r in fleet.results
        ],
    }


def real_dict(
    setup: ValidationSetup, fleets: Sequence[FleetRun], pooled: RunRecord, window_s: float
) -> dict[str, Any]:
    """The real runs pooled (what is compared), with each run's own figures under `runs`."""
    runs = [real_run_dict(setup, f, window_s) for f in fleets]
    lags = [r["client_send_lag_p95_s"] for r in runs]
    return {
        **_side(pooled, window_s),
        "peak_ready": max(r["peak_ready"] for r in runs),
        "failures": _merged([r["failures"] for r in runs]),
        "sampler_errors": sum(r["sampler_errors"] for r in runs),
        "client_send_lag_p95_s": max((x for x in lags if x is not None), default=None),
        "is_schedule_kept": all(r["is_schedule_kept"] for r in runs),
        "tpot_p50_s": percentile([t for f in fleets for t in real_tpots(f)], 50),
        "operator_tick_period_s": _mean([f.tick_period_s for f in fleets]),
        "runs": runs,
    }


def sim_run_dict(sim: SimRun, window_s: float) -> dict[str, Any]:
    rejected = Counter(r.reject_reason for r in sim.result.requests if r.reject_reason is not None)
    return {
        **_side(sim.record, window_s),
        "rejected": dict(rejected),
        "tpot_p50_s": percentile(sim_tpots(sim), 50),
        "tick_period_s": sim.config.interval_s,
        "first_tick_s": sim.config.first_tick_s,
        "cold_starts_s": list(sim.config.variants[0].cold_starts_s),
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


def sim_dict(sims: Sequence[SimRun], pooled: RunRecord, window_s: float) -> dict[str, Any]:
    """The simulated runs pooled, with each run (one tick phase each) under `runs`."""
    runs = [sim_run_dict(s, window_s) for s in sims]
    return {
        **_side(pooled, window_s),
        "peak_ready": max(r["peak_ready"] for r in runs),
        "rejected": _merged([r["rejected"] for r in runs]),
        "tpot_p50_s": percentile([t for s in sims for t in sim_tpots(s)], 50),
        "tick_period_s": _mean([s.config.interval_s for s in sims]),
        "runs": runs,
    }


def setup_dict(
    setup: ValidationSetup, workload: str, cold_start_s: float, measured_s: Sequence[float]
) -> dict[str, Any]:
    return {
        "workload": workload,
        "num_arrivals": len(setup.arrivals),
        "fleet": asdict(setup.fleet),
        "engine_profile": setup.profile.to_dict(),
        "kv_capacity_tokens": setup.kv_capacity_tokens,
        "cold_start": {
            "fed_to_sim_s": cold_start_s,
            "measured_s": list(measured_s),
            "how": (
                "median over the worker pods the autoscaler added during the replays: the worker "
                "Deployment's replicas rising -> the pod Ready, both seen by watch"
            ),
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
    runs = f"{data['repeats']} runs a side, pooled" if data["repeats"] > 1 else "one run a side"
    t = Table(title=f"sim validation: {data['workload']}; cold start {cold_start:.1f} s; {runs}")
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
    if data["repeats"] > 1:
        plain("TTFT p95, each run", [" ".join(_fmt(r["ttft_p95_s"]) for r in s["runs"]) for s in sides])
    return t
