"""The demo's schedule: the busiest slice, thinning to the rate caps, length caps, and the late request."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.demo.workload import (
    BURST,
    LATE,
    SIM_FLEET,
    TORCH_FLEET,
    WorkloadOptions,
    busiest_window,
    peak_rate,
    plan,
)
from tokenfleet_devkit.traces import TraceRecord

pytestmark = pytest.mark.unit


def records(arrivals: list[float], prompt: int = 1000, output: int = 50) -> list[TraceRecord]:
    return [TraceRecord(t, prompt, output) for t in arrivals]


@pytest.mark.parametrize(
    ("arrivals", "length", "expected_start"),
    [
        ([0, 1, 2, 50, 51, 52, 53, 100], 10, 50),  # the denser cluster wins
        ([0, 1, 2, 50, 51, 52], 10, 0),  # ties keep the earliest
        ([5.0], 10, 5.0),
        ([0, 9.9, 10, 10.5, 11, 12, 30], 2, 9.9),  # 9.9..11.9 holds four, 10..12 only three
    ],
)
def test_busiest_window(arrivals: list[float], length: float, expected_start: float) -> None:
    start, end = busiest_window(records(arrivals), length)
    assert (start, end) == (expected_start, expected_start + length)


def test_busiest_window_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no requests"):
        busiest_window([], 10)


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [([], 0.0), ([0.1, 0.2, 7.0], 0.4), ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 1.0)],
)
def test_peak_rate_over_five_second_bins(arrivals: list[float], expected: float) -> None:
    assert peak_rate(arrivals) == pytest.approx(expected)


def bursty_trace() -> list[TraceRecord]:
    """A quiet hour with one dense minute (20 req/s) at 600 s and a straggler afterwards."""
    quiet = [float(t) for t in range(0, 600, 10)]
    burst = [600 + i * 0.05 for i in range(1200)]
    return records([*quiet, *burst, 2000.0], prompt=3000, output=400)


def test_plan_replays_the_burst_thinned_to_the_caps_then_quiet_then_one_late_request() -> None:
    options = WorkloadOptions(burst_s=30, quiet_s=40, speedup=4, max_rps=6, mean_rps=3, seed=1)
    workload = plan(bursty_trace(), options)
    start, end = workload.trace_window_s
    assert start <= 600 < end and end - start == 120
    burst = [r for r in workload.requests if r.phase == BURST]
    (late,) = [r for r in workload.requests if r.phase == LATE]
    assert workload.requests[-1] is late and late.at_s == 70 and late.fleet == SIM_FLEET
    assert all(0 <= r.at_s < 30 for r in burst)
    # 20 req/s of trace played 4x faster is 80 req/s; thinning keeps about 6 req/s at the peak.
    assert workload.trace_peak_rps == pytest.approx(80, rel=0.05)
    assert workload.rate_scale == pytest.approx(6 / 80, rel=0.05)
    assert 60 < len(burst) < 120
    assert peak_rate([r.at_s for r in burst]) < 10
    assert [r.index for r in workload.requests] == list(range(len(workload.requests)))
    assert all(r.prompt_tokens == 256 and r.max_tokens == 32 for r in workload.requests)  # capped
    assert "4x faster" in workload.scaling_note(options) and "40s quiet" in workload.scaling_note(options)


def test_plan_scales_lengths_and_splits_fleets_deterministically() -> None:
    trace = records([i * 0.5 for i in range(400)], prompt=1200, output=10)
    options = WorkloadOptions(burst_s=50, quiet_s=10, speedup=1, torch_share=0.25, seed=3)
    first, again = plan(trace, options), plan(trace, options)
    assert first == again
    assert all(r.prompt_tokens == 120 and r.max_tokens == 10 for r in first.requests)
    assert first.requests[0].fleet == SIM_FLEET  # the first request is the one that wakes the fleet
    share = sum(r.fleet == TORCH_FLEET for r in first.requests) / len(first.requests)
    assert 0.1 < share < 0.4


def test_late_request_reuses_the_last_record_when_the_window_reaches_the_end() -> None:
    workload = plan(records([0, 1, 2]), WorkloadOptions(burst_s=10, quiet_s=5, speedup=1))
    assert workload.requests[-1].phase == LATE and workload.late_at_s == 15


@pytest.mark.parametrize(
    "bad",
    [
        {"burst_s": 0},
        {"quiet_s": -1},
        {"speedup": 0},
        {"max_rps": 0},
        {"torch_share": 1.5},
        {"max_prompt_tokens": 0},
        {"prompt_scale": 0},
    ],
)
def test_options_reject_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WorkloadOptions(**bad)  # type: ignore[arg-type]
