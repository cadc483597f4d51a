"""The sim-vs-real comparison: step-curve integrals, the three agreement metrics and their verdict."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.sim.validation import (
    RunRecord,
    compare,
    integral,
    mean_abs_gap,
    mean_curve,
    pool,
    value_at,
)

pytestmark = pytest.mark.unit


def record(name: str, ready: list[tuple[float, float]], ttfts: tuple[float, ...] = (1.0,) * 20) -> RunRecord:
    return RunRecord(name, len(ttfts), ttfts, tuple(ready))


@pytest.mark.parametrize(
    ("t", "expected"),
    [(-1.0, 1.0), (0.0, 1.0), (9.99, 1.0), (10.0, 3.0), (25.0, 2.0), (100.0, 2.0)],
)
def test_value_at_holds_each_value_until_the_next_point(t: float, expected: float) -> None:
    curve = [(0.0, 1.0), (10.0, 3.0), (20.0, 2.0)]
    assert value_at(curve, t) == expected


def test_integral_of_a_step_curve_is_exact_and_clipped_to_the_window() -> None:
    curve = [(0.0, 1.0), (10.0, 3.0), (20.0, 2.0)]
    assert integral(curve, 30.0) == pytest.approx(10 * 1 + 10 * 3 + 10 * 2)
    assert integral(curve, 15.0) == pytest.approx(10 * 1 + 5 * 3)


def test_identical_runs_agree_perfectly() -> None:
    curve = [(0.0, 1.0), (30.0, 4.0), (90.0, 1.0), (120.0, 1.0)]
    result = compare(record("real", curve), record("sim", curve))
    assert result.ttft_p95_relative_difference == 0.0
    assert result.replica_curve_error == 0.0
    assert result.replica_seconds_ratio == 1.0
    assert result.is_agreeing


def test_a_late_curve_costs_its_lag_in_curve_error_but_not_in_replica_seconds() -> None:
    real = [(0.0, 1.0), (30.0, 3.0), (60.0, 1.0), (120.0, 1.0)]
    late = [(0.0, 1.0), (36.0, 3.0), (66.0, 1.0), (120.0, 1.0)]
    result = compare(record("real", real), record("sim", late))
    # Two 6 s gaps of 2 replicas over 120 s, against a mean of (60*1 + 30*3 + 30*1) / 120 = 1.5.
    assert result.replica_curve_error == pytest.approx((2 * 6 * 2 / 120) / 1.5)
    assert result.replica_seconds_ratio == pytest.approx(1.0)
    assert mean_abs_gap(real, late, 120.0) == pytest.approx(24 / 120)


def test_the_window_is_the_shorter_run() -> None:
    real = [(0.0, 2.0), (100.0, 2.0)]
    sim = [(0.0, 2.0), (60.0, 2.0)]
    result = compare(record("real", real), record("sim", sim))
    assert result.window_s == 60.0
    assert result.real_replica_seconds == pytest.approx(120.0)


def test_ttft_difference_is_relative_to_the_real_fleet_and_signed() -> None:
    curve = [(0.0, 1.0), (10.0, 1.0)]
    real = record("real", curve, tuple([1.0] * 19 + [2.0]))  # nearest-rank p95 of 20 is the 19th value
    slow = record("sim", curve, tuple([1.0] * 18 + [1.5, 3.0]))
    result = compare(real, slow)
    assert result.ttft_p95_relative_difference == pytest.approx(0.5)
    assert result.checks == {"ttft_p95": False, "replica_curve": True, "replica_seconds": True}
    assert not result.is_agreeing


@pytest.mark.parametrize(
    ("sim_level", "is_within"),
    [(1.14, True), (1.16, False), (0.86, True), (0.84, False)],
)
def test_replica_checks_use_the_tolerance_on_both_sides(sim_level: float, is_within: bool) -> None:
    real = [(0.0, 1.0), (100.0, 1.0)]
    sim = [(0.0, sim_level), (100.0, sim_level)]
    result = compare(record("real", real), record("sim", sim))
    assert result.checks["replica_seconds"] is is_within
    assert result.checks["replica_curve"] is is_within


def test_a_run_without_served_requests_cannot_agree() -> None:
    curve = [(0.0, 1.0), (10.0, 1.0)]
    result = compare(record("real", curve), record("sim", curve, ()))
    assert result.ttft_p95_relative_difference is None
    assert not result.checks["ttft_p95"]


def test_the_mean_curve_steps_wherever_any_curve_steps() -> None:
    a = [(0.0, 1.0), (10.0, 3.0), (40.0, 3.0)]
    b = [(0.0, 1.0), (20.0, 2.0), (40.0, 2.0)]
    mean = mean_curve([a, b], 40.0)
    assert mean == ((0.0, 1.0), (10.0, 2.0), (20.0, 2.5), (40.0, 2.5))
    # The mean's integral is the mean of the integrals: pooling keeps replica-seconds exact.
    assert integral(mean, 40.0) == pytest.approx((integral(a, 40.0) + integral(b, 40.0)) / 2)


def test_pooled_runs_keep_every_ttft_and_cover_the_span_all_of_them_ran() -> None:
    fast = record("a", [(0.0, 1.0), (50.0, 1.0)], (1.0,) * 9 + (2.0,))
    slow = record("b", [(0.0, 2.0), (60.0, 2.0)], (1.0,) * 9 + (6.0,))
    pooled = pool("real", [fast, slow])
    assert pooled.num_requests == 20
    assert sorted(pooled.ttfts_s)[-2:] == [2.0, 6.0]
    assert pooled.end_s == 50.0
    assert value_at(pooled.ready, 25.0) == pytest.approx(1.5)
    # One slow run moves the pooled p95 less than it moves its own: the p95 of 20 is their 19th.
    assert pooled.ttft_p95_s == 2.0
    assert slow.ttft_p95_s == 6.0
