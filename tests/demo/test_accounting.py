"""The summary's numbers: percentiles, scale moves, GPU-hours and cost against peak provisioning."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.demo.accounting import (
    FleetSample,
    RequestResult,
    fleet_cost,
    percentile,
    scale_moves,
    summarize,
)

pytestmark = pytest.mark.unit


def sample(t: float, desired: int, pods: dict[str, int] | None = None, ready: int = 0) -> FleetSample:
    return FleetSample(t_s=t, fleet="sim", desired={"a": desired}, ready={"a": ready}, pods=pods or {})


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([2.0], 95, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_scale_moves_count_changes_of_the_desired_replicas() -> None:
    timeline = [sample(t, d) for t, d in enumerate([0, 2, 4, 4, 1, 0, 0, 1, 1])]
    moves = scale_moves(timeline)
    assert (moves.ups, moves.downs, moves.reached_zero, moves.woke_from_zero) == (3, 2, True, 2)


def test_scale_moves_of_a_flat_fleet() -> None:
    moves = scale_moves([sample(t, 1) for t in range(5)])
    assert (moves.ups, moves.downs, moves.reached_zero, moves.woke_from_zero) == (0, 0, False, 0)


def test_fleet_cost_integrates_pods_as_a_step_function_and_compares_with_the_peak() -> None:
    hourly = {"h100": 4.0, "l40s": 1.0}
    timeline = [
        sample(0, 0, {"h100": 1, "l40s": 2}),
        sample(1800, 0, {"h100": 0, "l40s": 0}),
    ]
    cost = fleet_cost(timeline, hourly, end_s=3600)
    assert cost.gpu_hours == pytest.approx(1.5)  # 3 pods for half an hour
    assert cost.cost == pytest.approx(3.0)  # (4 + 2) $/h for half an hour
    assert cost.peak_pods == {"h100": 1, "l40s": 2}
    assert cost.peak_gpu_hours == pytest.approx(3.0) and cost.peak_cost == pytest.approx(6.0)
    assert cost.saving == pytest.approx(0.5)


def test_fleet_cost_of_no_samples_is_zero() -> None:
    cost = fleet_cost([], {"a": 1.0}, end_s=100)
    assert (cost.gpu_hours, cost.cost, cost.peak_cost, cost.saving) == (0.0, 0.0, 0.0, 0.0)


def result(i: int, ok: bool = True, **kw: object) -> RequestResult:
    fields: dict[str, object] = {
        "fleet": "sim",
        "phase": "burst",
        "sent_s": float(i),
        "ttft_s": 0.1 * (i + 1),
    }
    fields.update(kw)
    return RequestResult(index=i, is_ok=ok, **fields)  # type: ignore[arg-type]


def test_summarize_counts_failures_cold_starts_and_the_late_request() -> None:
    results = [
        result(0, is_cold=True),
        result(1),
        result(2, ok=False, error="NotFoundError", ttft_s=None),
        result(3, phase="late", is_cold=True),
    ]
    timelines = {"sim": [sample(0, 0), sample(1, 2, {"a": 2}), sample(2, 0), sample(3, 1, {"a": 1})]}
    summary = summarize(results, timelines, {"sim": {"a": 2.0}}, "sim", end_s=4)
    assert (summary.num_sent, summary.num_ok, summary.num_failed) == (4, 3, 1)
    assert summary.failures == {"NotFoundError": 1} and summary.served_by_fleet == {"sim": 3}
    assert not summary.is_success
    assert summary.num_cold_ok == 2 and summary.is_late_ok
    assert summary.ttft_p50_s == pytest.approx(0.2) and summary.ttft_p95_s == pytest.approx(0.4)
    assert summary.warm_ttft_p50_s == summary.warm_ttft_p95_s == pytest.approx(0.2)  # only #1 was warm
    assert summary.moves.reached_zero and summary.moves.woke_from_zero == 2
    assert summary.costs["sim"].peak_pods == {"a": 2}


def test_a_failed_late_request_is_reported() -> None:
    summary = summarize([result(0, ok=False, phase="late", error="APITimeoutError")], {}, {}, "sim", 1.0)
    assert not summary.is_late_ok and summary.failures == {"APITimeoutError": 1}
