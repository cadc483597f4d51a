"""The demo's request schedule, cut from a real trace (pure: records in, a plan out).

The plan has three phases on the wall clock:
- burst: the busiest window of the trace (`burst_s * speedup` trace seconds), played `speedup` times
  faster, thinned so the replayed mean stays under `mean_rps` and the peak under `max_rps` (2 shared
  cores cannot serve the real rate); thinning keeps the trace's shape, bursts and lulls included;
- quiet: `quiet_s` seconds with no requests, long enough for the fleet to scale down and to zero;
- late: one request (the trace's next one after the window), which must wake the fleet from zero.
Lengths are scaled and capped for the tiny model; the plan says in words what was done.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenfleet_devkit.traces import TraceRecord, scale_rate

BURST = "burst"
LATE = "late"
SIM_FLEET = "sim"
TORCH_FLEET = "torch"
_PEAK_BIN_S = 5.0  # the replayed peak rate is measured over bins this long


@dataclass(frozen=True)
class WorkloadOptions:
    burst_s: float = 90.0
    quiet_s: float = 45.0
    speedup: float = 4.0
    max_rps: float = 12.0
    mean_rps: float = 3.0
    prompt_scale: float = 0.1
    output_scale: float = 1.0
    max_prompt_tokens: int = 256
    max_output_tokens: int = 32
    torch_share: float = 0.1  # fraction of burst requests sent to the real-engine (torch) fleet
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.burst_s, self.speedup, self.max_rps, self.mean_rps) <= 0 or self.quiet_s < 0:
            raise ValueError("burst, speedup and the rate caps must be positive and quiet non-negative")
        if not 0.0 <= self.torch_share <= 1.0:
            raise ValueError("torch_share must be within [0, 1]")
        if (
            min(self.max_prompt_tokens, self.max_output_tokens) < 1
            or min(self.prompt_scale, self.output_scale) <= 0
        ):
            raise ValueError("length caps and the length scale must be positive")


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    at_s: float  # wall seconds after the replay starts
    prompt_tokens: int
    max_tokens: int
    phase: str  # BURST or LATE
    fleet: str  # SIM_FLEET or TORCH_FLEET


@dataclass(frozen=True)
class Workload:
    requests: tuple[PlannedRequest, ...]
    trace_window_s: tuple[float, float]  # the slice of the trace, in trace seconds
    rate_scale: float  # fraction of the slice's requests kept
    trace_peak_rps: float  # the slice's peak rate once time-compressed, before thinning
    trace_mean_rps: float  # the slice's mean rate once time-compressed, before thinning
    burst_end_s: float
    late_at_s: float

    @property
    def end_s(self) -> float:
        return self.late_at_s

    def scaling_note(self, options: WorkloadOptions) -> str:
        start, end = self.trace_window_s
        return (
            f"trace {start:.0f}s-{end:.0f}s played {options.speedup:g}x faster; "
            f"{self.rate_scale:.0%} of its requests kept (mean {self.trace_mean_rps:.1f} -> "
            f"{self.trace_mean_rps * self.rate_scale:.1f} req/s, 5s peak {self.trace_peak_rps:.1f} -> "
            f"{self.trace_peak_rps * self.rate_scale:.1f}); prompts x{options.prompt_scale:g} capped at "
            f"{options.max_prompt_tokens} tokens, outputs x{options.output_scale:g} capped at "
            f"{options.max_output_tokens}; "
            f"then {options.quiet_s:.0f}s quiet and one late request"
        )


def busiest_window(records: list[TraceRecord], length_s: float) -> tuple[float, float]:
    """The [start, start + length) span of trace time holding the most arrivals (earliest on ties)."""
    if not records:
        raise ValueError("the trace has no requests")
    best_start, best_count, left = records[0].arrival_s, 0, 0
    for right, record in enumerate(records):
        while record.arrival_s - records[left].arrival_s >= length_s:
            left += 1
        if right - left + 1 > best_count:
            best_count, best_start = right - left + 1, records[left].arrival_s
    return best_start, best_start + length_s


def peak_rate(arrivals: list[float], bin_s: float = _PEAK_BIN_S) -> float:
    """Highest request rate over fixed bins of `bin_s` seconds (0 for no arrivals)."""
    counts: dict[int, int] = {}
    for t in arrivals:
        counts[int(t // bin_s)] = counts.get(int(t // bin_s), 0) + 1
    return max(counts.values(), default=0) / bin_s


def _lengths(record: TraceRecord, options: WorkloadOptions) -> tuple[int, int]:
    prompt = max(1, round(record.prompt_tokens * options.prompt_scale))
    output = max(1, round(record.output_tokens * options.output_scale))
    return min(prompt, options.max_prompt_tokens), min(output, options.max_output_tokens)


def plan(records: list[TraceRecord], options: WorkloadOptions) -> Workload:
    """Cut, compress, thin and scale the trace into the demo's schedule."""
    start, end = busiest_window(records, options.burst_s * options.speedup)
    window = [r for r in records if start <= r.arrival_s < end]
    compressed = [(r.arrival_s - start) / options.speedup for r in window]
    trace_peak = peak_rate(compressed)
    trace_mean = len(window) / options.burst_s
    rate_scale = min(1.0, options.max_rps / max(trace_peak, 1e-9), options.mean_rps / max(trace_mean, 1e-9))
    kept = scale_rate(window, rate_scale, seed=options.seed)
    rng = random.Random(options.seed)
    requests: list[PlannedRequest] = []
    for i, record in enumerate(kept):
        prompt, output = _lengths(record, options)
        # The very first request goes to the autoscaled fleet: it is the one that wakes it from zero.
        fleet = TORCH_FLEET if i > 0 and rng.random() < options.torch_share else SIM_FLEET
        at_s = (record.arrival_s - start) / options.speedup
        requests.append(PlannedRequest(i, at_s, prompt, output, BURST, fleet))
    after = [r for r in records if r.arrival_s >= end] or records[-1:]
    burst_end = options.burst_s
    late_at = burst_end + options.quiet_s
    prompt, output = _lengths(after[0], options)
    requests.append(PlannedRequest(len(requests), late_at, prompt, output, LATE, SIM_FLEET))
    return Workload(
        requests=tuple(requests),
        trace_window_s=(start, end),
        rate_scale=rate_scale,
        trace_peak_rps=trace_peak,
        trace_mean_rps=trace_mean,
        burst_end_s=burst_end,
        late_at_s=late_at,
    )
