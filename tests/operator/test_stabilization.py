"""Stabilisation windows (HPA direction) and step limits, plus the flap detector the policy tests rely on."""

from __future__ import annotations

import pytest

from tests.operator.operator_fleet_script import flaps
from tokenfleet_operator.policy import Decision
from tokenfleet_operator.stabilization import TimedRecommendation as R
from tokenfleet_operator.stabilization import limit_step, stabilize

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("history", "current", "up", "down", "expected"),
    [
        ([R(0, 5), R(10, 3), R(20, 2)], 5, 0, 30, 5),  # down: the largest in the window
        ([R(0, 5), R(10, 3), R(20, 2)], 5, 0, 15, 3),  # the 5 at t=0 left the window
        ([R(0, 2), R(10, 8), R(20, 9)], 2, 15, 300, 8),  # up: the smallest in the window
        ([R(0, 2), R(10, 8), R(20, 9)], 2, 0, 300, 9),
        ([R(0, 4), R(20, 4)], 4, 60, 300, 4),
    ],
)
def test_stabilize(history: list[R], current: int, up: float, down: float, expected: int) -> None:
    assert stabilize(history, current, now=20, up_window=up, down_window=down) == expected


def test_burst_skips_the_up_window() -> None:
    history = [R(0, 2), R(10, 2), R(20, 10)]
    assert stabilize(history, 2, now=20, up_window=60, down_window=300) == 2
    assert stabilize(history, 2, now=20, up_window=60, down_window=300, skip_up_window=True) == 10


@pytest.mark.parametrize(("current", "desired", "expected"), [(2, 10, 6), (10, 2, 9), (5, 5, 5), (5, 7, 7)])
def test_limit_step(current: int, desired: int, expected: int) -> None:
    assert limit_step(current, desired, max_up=4, max_down=1) == expected


def _d(before: int, after: int) -> Decision:
    return Decision(replicas={"a": after}, previous={"a": before}, reason="")


def test_flap_detector_sees_reversals_inside_the_window_only() -> None:
    flapping = [(0.0, _d(1, 2)), (10.0, _d(2, 1)), (20.0, _d(1, 2))]
    assert flaps(flapping, window=300) == ["up-down-up between t=0 and t=20"]
    assert flaps(flapping, window=15) == []
    assert flaps([(0.0, _d(1, 2)), (5.0, _d(2, 2)), (10.0, _d(2, 3))], window=300) == []


def test_short_history_never_scales_down_early() -> None:
    history = [R(100, 1), R(105, 1)]
    assert stabilize(history, 6, now=105, up_window=0, down_window=300, unseen_ask=6) == 6
    # Found 4 at the start, now 6 after its own scale-up: down to 4, not below.
    assert stabilize(history, 6, now=105, up_window=0, down_window=300, unseen_ask=4) == 4
    assert stabilize(history, 6, now=105, up_window=0, down_window=300) == 1
    assert stabilize([R(105, 9)], 6, now=105, up_window=0, down_window=300, unseen_ask=6) == 9


def test_noise_quantile_drops_the_windows_rare_largest_asks() -> None:
    history = [R(t, 6 if t in (30, 150) else 4) for t in range(0, 300, 10)]  # two swings in 30 readings
    assert stabilize(history, 6, now=290, up_window=0, down_window=300) == 6  # HPA: the largest
    assert stabilize(history, 6, now=290, up_window=0, down_window=300, down_quantile=0.9) == 4
    steady = [R(t, 6 if t % 20 else 4) for t in range(0, 300, 10)]  # half the window asks for 6
    assert stabilize(steady, 6, now=290, up_window=0, down_window=300, down_quantile=0.9) == 6


def test_noise_quantile_never_scales_down_before_a_full_window() -> None:
    history = [R(100, 1), R(105, 1)]
    got = stabilize(history, 6, now=105, up_window=0, down_window=300, unseen_ask=6, down_quantile=0.5)
    assert got == 6
