"""What the demo measured, and the summary it ends with (pure: samples and results in, numbers out).

GPU-hours count every worker pod that exists (starting, serving or draining: each holds its GPU),
integrated over the sampled timeline as a step function. "Peak provisioning" is the static fleet a
team would run without autoscaling: each variant's peak pod count, held for the whole replay.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestResult:
    index: int
    fleet: str
    phase: str
    sent_s: float  # seconds after the replay started
    is_ok: bool
    error: str | None = None  # the exception's class name when not ok
    ttft_s: float | None = None
    latency_s: float | None = None
    output_tokens: int = 0
    is_cold: bool = False  # sent while its fleet had no ready worker


@dataclass(frozen=True)
class FleetSample:
    t_s: float
    fleet: str
    desired: Mapping[str, int]  # replicas the operator asks for, per variant
    ready: Mapping[str, int]  # ready worker pods, per variant
    pods: Mapping[str, int]  # worker pods that exist (they hold a GPU), per variant
    queue_depth: float | None = None
    kv_usage: float | None = None
    tokens_per_second: float | None = None
    cost_per_mtok: float | None = None
    last_reason: str | None = None

    @property
    def total_desired(self) -> int:
        return sum(self.desired.values())

    @property
    def total_ready(self) -> int:
        return sum(self.ready.values())


@dataclass(frozen=True)
class FleetCost:
    gpu_hours: float
    cost: float
    peak_pods: dict[str, int] = field(default_factory=dict)
    peak_gpu_hours: float = 0.0
    peak_cost: float = 0.0

    @property
    def saving(self) -> float:
        """Fraction of the peak-provisioned cost that autoscaling avoided."""
        return max(0.0, 1.0 - self.cost / self.peak_cost) if self.peak_cost > 0 else 0.0


@dataclass(frozen=True)
class ScaleMoves:
    ups: int
    downs: int
    reached_zero: bool  # the desired replicas went from some to none
    woke_from_zero: int  # times the desired replicas went from none to some


@dataclass(frozen=True)
class Summary:
    num_sent: int
    num_ok: int
    num_failed: int
    failures: dict[str, int]
    served_by_fleet: dict[str, int]
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    warm_ttft_p50_s: float | None  # requests sent while their fleet had a ready worker
    warm_ttft_p95_s: float | None
    latency_p95_s: float | None
    num_cold_ok: int  # requests sent while their fleet had no ready worker, answered
    is_late_ok: bool
    moves: ScaleMoves
    costs: dict[str, FleetCost]

    @property
    def is_success(self) -> bool:
        return self.num_failed == 0 and self.num_ok == self.num_sent


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def scale_moves(samples: Sequence[FleetSample]) -> ScaleMoves:
    """Changes of the desired replicas along one fleet's timeline."""
    ups = downs = woke = 0
    reached_zero = False
    for before, after in itertools.pairwise(samples):
        a, b = before.total_desired, after.total_desired
        ups += b > a
        downs += b < a
        woke += a == 0 and b > 0
        reached_zero |= a > 0 and b == 0
    return ScaleMoves(ups=ups, downs=downs, reached_zero=reached_zero, woke_from_zero=woke)


def fleet_cost(samples: Sequence[FleetSample], hourly: Mapping[str, float], end_s: float) -> FleetCost:
    """GPU-hours and cost of one fleet's pods over [first sample, end_s], and of peak provisioning."""
    gpu_hours = cost = 0.0
    peak: dict[str, int] = {name: 0 for name in hourly}
    for i, sample in enumerate(samples):
        until = samples[i + 1].t_s if i + 1 < len(samples) else end_s
        hours = max(0.0, until - sample.t_s) / 3600.0
        for name, pods in sample.pods.items():
            gpu_hours += pods * hours
            cost += pods * hourly.get(name, 0.0) * hours
            peak[name] = max(peak.get(name, 0), pods)
    span_h = max(0.0, end_s - samples[0].t_s) / 3600.0 if samples else 0.0
    return FleetCost(
        gpu_hours=gpu_hours,
        cost=cost,
        peak_pods=peak,
        peak_gpu_hours=sum(peak.values()) * span_h,
        peak_cost=sum(n * hourly.get(name, 0.0) for name, n in peak.items()) * span_h,
    )


def summarize(
    results: Sequence[RequestResult],
    timelines: Mapping[str, Sequence[FleetSample]],
    hourly: Mapping[str, Mapping[str, float]],
    autoscaled: str,
    end_s: float,
) -> Summary:
    """The demo's verdict; scale moves are those of the `autoscaled` fleet."""
    ok = [r for r in results if r.is_ok]
    failures: dict[str, int] = {}
    for r in results:
        if not r.is_ok:
            failures[r.error or "unknown"] = failures.get(r.error or "unknown", 0) + 1
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    warm = [r.ttft_s for r in ok if r.ttft_s is not None and not r.is_cold]
    latencies = [r.latency_s for r in ok if r.latency_s is not None]
    late = [r for r in results if r.phase == "late"]
    return Summary(
        num_sent=len(results),
        num_ok=len(ok),
        num_failed=len(results) - len(ok),
        failures=failures,
        served_by_fleet={
            fleet: sum(1 for r in ok if r.fleet == fleet) for fleet in sorted({r.fleet for r in results})
        },
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        warm_ttft_p50_s=percentile(warm, 50),
        warm_ttft_p95_s=percentile(warm, 95),
        latency_p95_s=percentile(latencies, 95),
        num_cold_ok=sum(1 for r in ok if r.is_cold),
        is_late_ok=bool(late) and all(r.is_ok for r in late),
        moves=scale_moves(timelines.get(autoscaled, ())),
        costs={
            fleet: fleet_cost(samples, hourly.get(fleet, {}), end_s) for fleet, samples in timelines.items()
        },
    )
