"""`tokenfleet bench sim-validation --smoke` end to end: the real fleet on the local control plane, then
the simulator on the same arrivals. Asserts that the comparison is computed from two complete runs, not
that they agree (a 25 s smoke excerpt is too short to judge that)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_CLUSTER, Cluster
from tokenfleet_devkit.bench import sim_validation
from tokenfleet_devkit.bench import sim_validation_report as report
from tokenfleet_devkit.bench.sim_validation_fleet import FleetRun
from tokenfleet_devkit.bench.sim_validation_watch import OperatorTicks
from tokenfleet_devkit.sim.pod_lifecycle import Order, PodLife
from tokenfleet_devkit.sim.validation import RunRecord, pool
from tokenfleet_devkit.sim.validation_setup import ValidationSetup


def fleet_run(
    ticks: OperatorTicks | None = None,
    record: RunRecord | None = None,
    lives: dict[str, PodLife] | None = None,
    orders: list[Order] | None = None,
) -> FleetRun:
    record = record or RunRecord("real", 0, (), ((0.0, 1.0),))
    return FleetRun(record, [], lives or {}, orders or [], ticks=ticks)


@pytest.mark.unit
def test_cold_start_comes_from_pods_the_autoscaler_added_during_the_replay() -> None:
    # The first pod started on an idle machine before the replay; one added pod is still starting.
    orders = [Order(-31.0, 1), Order(19.0, 2), Order(39.5, 3)]
    lives = {
        "first": PodLife(-30.0, -26.0),
        "a": PodLife(20.0, 33.0),
        "b": PodLife(40.0, 51.0),
        "c": PodLife(90.0, None),
    }
    run = fleet_run(lives=lives, orders=orders)
    assert run.cold_starts_s == [pytest.approx(11.5), pytest.approx(14.0)]
    assert run.added_cold_starts_s == [pytest.approx(14.0), pytest.approx(11.5)]  # in order of creation


@pytest.mark.unit
def test_without_added_pods_the_initial_ones_give_the_cold_start() -> None:
    run = fleet_run(lives={"first": PodLife(-30.0, -26.0)}, orders=[Order(-31.0, 1)])
    assert run.cold_starts_s == [pytest.approx(5.0)]


@pytest.mark.unit
def test_creation_to_ready_is_the_part_after_the_controllers_for_pods_added_in_the_replay() -> None:
    lives = {
        "first": PodLife(-30.0, -26.0),  # started before the replay
        "a": PodLife(20.25, 21.0),
        "b": PodLife(40.5, 41.75),
        "c": PodLife(90.0, None),  # never Ready
    }
    assert fleet_run(lives=lives).creation_to_ready_s == [pytest.approx(0.75), pytest.approx(1.25)]


@pytest.mark.unit
def test_tick_period_is_the_window_over_the_ticks_done_in_it() -> None:
    before, after = OperatorTicks(10, 1.0), OperatorTicks(110, 31.0)
    ticks = after.since(before, 250.0)
    assert (ticks.count, ticks.seconds) == (100, 30.0)
    assert fleet_run(ticks).tick_period_s == pytest.approx(2.5)
    assert fleet_run().tick_period_s is None


@pytest.mark.unit
def test_the_report_pools_the_real_runs_and_keeps_each_one() -> None:
    one = RunRecord("real", 3, (0.5, 1.0, 4.0), ((0.0, 1.0), (60.0, 3.0), (100.0, 3.0)))
    two = RunRecord("real", 3, (0.5, 1.0, 2.0), ((0.0, 1.0), (100.0, 1.0)))
    runs = [
        fleet_run(OperatorTicks(50, 5.0, 100.0), one),
        fleet_run(OperatorTicks(40, 4.0, 100.0), two),
    ]
    data = report.real_dict(ValidationSetup(()), runs, pool("real", [one, two]), 100.0)
    assert (data["requests"], data["served"]) == (6, 6)
    assert data["ttft_p95_s"] == 4.0
    assert [r["ttft_p95_s"] for r in data["runs"]] == [4.0, 2.0]
    assert data["replica_seconds"] == pytest.approx((60 + 40 * 3 + 100) / 2)
    assert data["peak_ready"] == 3.0
    assert data["operator_tick_period_s"] == pytest.approx((2.0 + 2.5) / 2)


@pytest.mark.unit
def test_repeats_must_be_positive() -> None:
    assert sim_validation.main(["--repeats", "0"]) == 2


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_compares_two_complete_runs(cluster: Cluster, tmp_path: Path) -> None:
    code = sim_validation.main(["--smoke", "--cluster-name", TEST_CLUSTER, "--results-dir", str(tmp_path)])
    data = json.loads((tmp_path / "sim-validation.json").read_text())
    real, sim, comparison = data["real"], data["sim"], data["comparison"]
    assert code == 0
    assert data["smoke"] is True
    assert real["requests"] == sim["requests"] == data["num_arrivals"] > 0
    assert real["served"] == real["requests"], real["failures"]
    assert sim["served"] == sim["requests"], sim["rejected"]
    # Both curves are exact step curves over the window (the real one from watch events); the fleet
    # was also sampled about once a second for the report.
    window = comparison["window_s"]
    assert real["ready_curve"][0] == [0.0, 1.0]  # the starting replica, Ready before the replay
    assert real["ready_curve"][-1][0] == pytest.approx(window)
    assert len(sim["ready_curve"]) >= 2
    (run,) = real["runs"]
    assert len(run["timeline"]) >= window / 2
    # The watch saw the operator's orders; the Deployment's creation (1 replica) came first.
    assert run["orders"][0][1] == 1
    assert run["orders"][0][0] < 0
    # The cold start fed to the sim was measured on real worker pods, from order to Ready.
    assert data["cold_start"]["measured_s"]
    assert all(0 < c < 60 for c in data["cold_start"]["measured_s"])
    assert data["cold_start"]["fed_to_sim_s"] > 0
    for key in ("ttft_p95_relative_difference", "replica_curve_error", "replica_seconds_ratio"):
        assert isinstance(comparison[key], float), key
        assert isinstance(data["comparison_calibrated"][key], float), key
    assert set(comparison["checks"]) == {"ttft_p95", "replica_curve", "replica_seconds"}
    # The operator's ticks were counted, and the calibrated sim ran at their measured period.
    assert real["operator_tick_period_s"] >= 1.8  # a fixed-rate 2 s tick, measured over the window
    assert data["sim_calibrated"]["tick_period_s"] == real["operator_tick_period_s"]
    # The fleet's namespace is gone again; the shared cluster stays up.
    namespaces = cluster.kubectl("get", "namespaces", "-o", "name").stdout
    assert "simval-" not in namespaces
