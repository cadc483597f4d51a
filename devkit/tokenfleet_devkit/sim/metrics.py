"""Summaries of a simulation: cost, latency percentiles, SLO attainment, scale events and lag."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenfleet_devkit.sim.fleet import SimResult, TimelinePoint
from tokenfleet_devkit.sim.request import SimRequest

LAG_SEARCH_S = 900.0  # a step not covered within this long is reported at this value


@dataclass(frozen=True)
class Slo:
    ttft_p95_s: float
    tpot_p95_s: float


def is_within(request: SimRequest, slo: Slo) -> bool:
    """Whether a request finished with its TTFT and TPOT within the targets (what attainment counts)."""
    return (
        request.finish_time is not None
        and request.ttft is not None
        and request.tpot is not None
        and request.ttft <= slo.ttft_p95_s
        and request.tpot <= slo.tpot_p95_s
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100.0 * len(ordered)) - 1))]


def replica_hours(result: SimResult) -> dict[str, float]:
    """Billed hours per variant: from creation to removal, clipped to the trace horizon."""
    hours: dict[str, float] = {}
    for w in result.workers:
        end = min(w.removed_at if w.removed_at is not None else result.horizon_s, result.horizon_s)
        hours[w.variant] = hours.get(w.variant, 0.0) + max(0.0, end - w.created_at) / 3600.0
    return hours


def worst_lag(timeline: Sequence[TimelinePoint], need_per_minute: Sequence[int]) -> float:
    """Longest time from a minute whose need rose to the first moment that many replicas were ready."""
    worst = 0.0
    times = [p.time for p in timeline]
    ready = [sum(p.ready.values()) for p in timeline]
    for m in range(1, len(need_per_minute)):
        need = need_per_minute[m]
        if need <= need_per_minute[m - 1]:
            continue
        start = m * 60.0
        lag = LAG_SEARCH_S
        for t, r in zip(times, ready, strict=True):
            if start <= t <= start + LAG_SEARCH_S and r >= need:
                lag = t - start
                break
        worst = max(worst, lag)
    return worst


def summarize(
    result: SimResult,
    slo: Slo,
    hourly_cost: Mapping[str, float],
    need_per_minute: Sequence[int] = (),
) -> dict[str, object]:
    requests = result.requests
    done = [r for r in requests if r.finish_time is not None]
    ttfts = [r.ttft for r in done if r.ttft is not None]
    tpots = [r.tpot for r in done if r.tpot is not None]
    within = sum(1 for r in requests if is_within(r, slo))
    hours = replica_hours(result)
    dollars = sum(h * hourly_cost.get(v, 0.0) for v, h in hours.items())
    tokens = sum(r.prompt_tokens + r.output_tokens for r in done)
    rejected = Counter(r.reject_reason for r in requests if r.reject_reason is not None)
    p95_ttft, p95_tpot = percentile(ttfts, 95), percentile(tpots, 95)
    return {
        "requests": len(requests),
        "completed": len(done),
        "rejected": dict(rejected),
        "gpu_hours": sum(hours.values()),
        "gpu_hours_by_variant": hours,
        "dollars": dollars,
        "dollars_per_mtok": dollars / tokens * 1e6 if tokens else None,
        "slo_attainment": within / len(requests) if requests else 1.0,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": p95_ttft,
        "ttft_p99_s": percentile(ttfts, 99),
        "tpot_p50_s": percentile(tpots, 50),
        "tpot_p95_s": p95_tpot,
        "tpot_p99_s": percentile(tpots, 99),
        "is_p95_within_slo": p95_ttft is not None
        and p95_tpot is not None
        and p95_ttft <= slo.ttft_p95_s
        and p95_tpot <= slo.tpot_p95_s,
        "scale_events": result.scale_events,
        "worst_lag_s": worst_lag(result.timeline, need_per_minute) if need_per_minute else None,
        "peak_ready": max((sum(p.ready.values()) for p in result.timeline), default=0),
        "events": result.num_events,
    }
