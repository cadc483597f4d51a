"""Does the simulator tell the truth? Compare one trace excerpt run on the real fleet and in the sim (pure).

Both runs are reduced to a `RunRecord`: the TTFT of every served request (the real fleet's measured at
the client, through the router) and the ready-replica curve, a step function of (time, replicas) with
time in seconds from the first planned arrival. The comparison window is [0, T] with T the end of the
shorter curve. On that window, with real(t) and sim(t) the two curves:

- TTFT p95 relative difference: (p95_sim - p95_real) / p95_real (nearest-rank p95 of served requests);
- replica curve error: (1/T) * integral |sim(t) - real(t)| dt / ((1/T) * integral real(t) dt), the mean
  absolute gap between the curves as a fraction of the real fleet's mean replicas (0 is a perfect match;
  a curve that reacts 5 s late to every change shows up here);
- replica-seconds ratio: integral sim(t) dt / integral real(t) dt, the capacity bill of the sim over the
  real one (1 is a perfect match; errors of opposite sign cancel here, not in the curve error).

The runs agree when |TTFT difference| <= tolerance, curve error <= tolerance and |ratio - 1| <= tolerance.
Integrals are exact for step functions (no resampling).

One real run is one draw: its scaling moments fall where the operator's ticks and metric scrapes
happen to land against the arrivals, and its TTFT p95 (the tenth-slowest of ~200 requests) moved from
2.1 s to 4.7 s between runs of the same excerpt. So several runs of each side are pooled (`pool`):
the TTFTs of all their requests, and their mean ready curve.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from tokenfleet_devkit.sim.metrics import percentile

TOLERANCE = 0.15

Curve = Sequence[tuple[float, float]]  # (time s, value), sorted by time; the value holds until the next


@dataclass(frozen=True)
class RunRecord:
    name: str
    num_requests: int  # planned
    ttfts_s: tuple[float, ...]  # one per served request
    ready: tuple[tuple[float, float], ...]  # the ready-replica step curve

    @property
    def num_served(self) -> int:
        return len(self.ttfts_s)

    @property
    def ttft_p95_s(self) -> float | None:
        return percentile(self.ttfts_s, 95)

    @property
    def ttft_p50_s(self) -> float | None:
        return percentile(self.ttfts_s, 50)

    @property
    def end_s(self) -> float:
        return self.ready[-1][0] if self.ready else 0.0


@dataclass(frozen=True)
class Comparison:
    window_s: float
    ttft_p95_relative_difference: float | None
    replica_curve_error: float | None
    replica_seconds_ratio: float | None
    real_replica_seconds: float
    sim_replica_seconds: float
    tolerance: float = TOLERANCE

    @property
    def checks(self) -> dict[str, bool]:
        t = self.tolerance
        ttft, error, ratio = (
            self.ttft_p95_relative_difference,
            self.replica_curve_error,
            self.replica_seconds_ratio,
        )
        return {
            "ttft_p95": ttft is not None and abs(ttft) <= t,
            "replica_curve": error is not None and error <= t,
            "replica_seconds": ratio is not None and abs(ratio - 1.0) <= t,
        }

    @property
    def is_agreeing(self) -> bool:
        return all(self.checks.values())


def value_at(curve: Curve, t: float) -> float:
    """The step curve's value at `t` (its first value before the first point, 0 for an empty curve)."""
    value = curve[0][1] if curve else 0.0
    for time, v in curve:
        if time > t:
            break
        value = v
    return value


def _breakpoints(curves: Sequence[Curve], end: float) -> list[float]:
    times = {0.0, end}
    for curve in curves:
        times.update(t for t, _ in curve if 0.0 < t < end)
    return sorted(times)


def integral(curve: Curve, end: float) -> float:
    """Integral of the step curve over [0, end]."""
    points = _breakpoints([curve], end)
    return sum(value_at(curve, a) * (b - a) for a, b in itertools.pairwise(points))


def mean_abs_gap(a: Curve, b: Curve, end: float) -> float:
    """(1/end) * integral over [0, end] of |a(t) - b(t)|."""
    if end <= 0:
        return 0.0
    points = _breakpoints([a, b], end)
    total = sum(abs(value_at(a, lo) - value_at(b, lo)) * (hi - lo) for lo, hi in itertools.pairwise(points))
    return total / end


def mean_curve(curves: Sequence[Curve], end: float) -> tuple[tuple[float, float], ...]:
    """The curves' pointwise mean over [0, end], exactly: a step at every breakpoint of any of them."""
    if not curves:
        return ()
    return tuple((t, sum(value_at(c, t) for c in curves) / len(curves)) for t in _breakpoints(curves, end))


def pool(name: str, records: Sequence[RunRecord]) -> RunRecord:
    """Runs of the same arrivals as one record: the TTFTs of all their served requests, and their mean
    ready curve over the span every run covers."""
    end = min((r.end_s for r in records), default=0.0)
    return RunRecord(
        name,
        sum(r.num_requests for r in records),
        tuple(t for r in records for t in r.ttfts_s),
        mean_curve([r.ready for r in records], end),
    )


def compare(real: RunRecord, sim: RunRecord, tolerance: float = TOLERANCE) -> Comparison:
    end = min(real.end_s, sim.end_s)
    real_area, sim_area = integral(real.ready, end), integral(sim.ready, end)
    real_p95, sim_p95 = real.ttft_p95_s, sim.ttft_p95_s
    ttft_diff = (sim_p95 - real_p95) / real_p95 if real_p95 and sim_p95 is not None else None
    mean_real = real_area / end if end > 0 else 0.0
    curve_error = mean_abs_gap(real.ready, sim.ready, end) / mean_real if mean_real > 0 else None
    return Comparison(
        window_s=end,
        ttft_p95_relative_difference=ttft_diff,
        replica_curve_error=curve_error,
        replica_seconds_ratio=sim_area / real_area if real_area > 0 else None,
        real_replica_seconds=real_area,
        sim_replica_seconds=sim_area,
        tolerance=tolerance,
    )
