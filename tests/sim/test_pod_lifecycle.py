"""A real fleet's replicas from watch events: cold start from the operator's order, the exact ready curve."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.sim.pod_lifecycle import Order, PodLife, order_to_ready_s, ready_curve, scale_ups

pytestmark = pytest.mark.unit


def test_scale_ups_are_the_orders_that_raise_the_count_from_zero() -> None:
    orders = [Order(-20.0, 1), Order(10.0, 3), Order(30.0, 2), Order(40.0, 4), Order(41.0, 4)]
    assert [o.at_s for o in scale_ups(orders)] == [-20.0, 10.0, 40.0]
    assert scale_ups([]) == []


def test_cold_start_runs_from_the_latest_scale_up_before_the_pod_was_added() -> None:
    orders = [Order(-20.0, 1), Order(10.0, 3), Order(30.0, 2), Order(40.0, 3)]
    pods = [
        PodLife(-19.5, -17.0),  # the starting replica, ordered by the Deployment's creation
        PodLife(10.4, 12.0),
        PodLife(10.5, 12.5),
        PodLife(40.3, 41.5),  # the scale-down at 30 s is not its order
        PodLife(45.0, None),  # never Ready: no cold start
    ]
    assert order_to_ready_s(orders, pods) == pytest.approx([3.0, 2.0, 2.5, 1.5])


def test_a_pod_with_no_scale_up_before_it_has_no_cold_start() -> None:
    # The watch began after the Deployment existed: its first sight of 2 replicas is no order.
    assert order_to_ready_s([Order(5.0, 2)], [PodLife(1.0, 3.0)]) == []


def test_ready_curve_steps_at_ready_and_at_deletion() -> None:
    pods = {
        "first": PodLife(-30.0, -26.0, 80.0),
        "second": PodLife(10.0, 12.5),
        "third": PodLife(11.0, 13.0, 50.0),
        "late": PodLife(95.0, 99.0),  # past the window
        "stillborn": PodLife(20.0, 30.0, 25.0),  # deleted before it was ever Ready: never counted
    }
    assert ready_curve(pods, 90.0) == (
        (0.0, 1.0),
        (12.5, 2.0),
        (13.0, 3.0),
        (50.0, 2.0),
        (80.0, 1.0),
        (90.0, 1.0),
    )


def test_ready_curve_of_simultaneous_changes_is_one_step() -> None:
    pods = {"a": PodLife(0.0, 5.0), "b": PodLife(0.0, 5.0)}
    assert ready_curve(pods, 10.0) == ((0.0, 0.0), (5.0, 2.0), (10.0, 2.0))
