"""The benchmark's search grid: thresholds crossed with minReplicas floors, tried on the same arrivals."""

from __future__ import annotations

import pytest

from tokenfleet_devkit import traces
from tokenfleet_devkit.sim import baselines
from tokenfleet_devkit.sim.benchmark import Knob, _floors, _tokenfleet_setting, search_knob
from tokenfleet_devkit.sim.fleet import SimConfig, VariantSetup
from tokenfleet_devkit.sim.metrics import Slo
from tokenfleet_devkit.sim.perf_model import gpu_model
from tokenfleet_devkit.sim.runs import Bench, Setting, minute_misses, run_setting, search_oracle

pytestmark = pytest.mark.unit

H100 = VariantSetup("h100", gpu_model("h100"), 4.0, cold_start_s=30.0)


def test_floors_are_none_and_half_the_peak_fleet() -> None:
    assert _floors(8, smoke=False) == [1, 4]
    assert _floors(5, smoke=False) == [1, 3]
    assert _floors(2, smoke=False) == [1]  # half of 2 is no floor
    assert _floors(8, smoke=True) == [1]


def heavy_bench() -> Bench:
    """Two minutes of 4000-token prompts at 20/s: three H100 replicas hold the SLO, two do not."""
    records = [traces.TraceRecord(i / 20, 4000, 50) for i in range(120 * 20)]
    return Bench(records, Slo(2.0, 0.1), SimConfig(variants=(H100,)), 180.0, [6, 6, 6])


def fixed(replicas: float, floor: int) -> baselines.Static:
    return baselines.Static("h100", max(floor, round(replicas)))


def test_the_search_goes_leaner_past_the_grid_until_the_slo_breaks() -> None:
    knob = Knob("replicas={:g}", [8.0, 6.0], 0.5, fixed)
    found = search_knob("static", knob, [1], heavy_bench(), extensions=3)
    tried = [(run.setting, run.meets_slo) for run in found.tried]
    # 6 was the grid's leanest and met the SLO: 3 is tried and meets it, 1.5 (two replicas) does
    # not; then once between them (2.1, two replicas again: it misses too).
    assert tried == [
        ("replicas=8", True),
        ("replicas=6", True),
        ("replicas=3", True),
        ("replicas=1.5", False),
        ("replicas=2.12132", False),
    ]
    assert found.best.setting == "replicas=3"


def test_each_floor_gets_the_grid_and_no_extension_when_told_none() -> None:
    knob = Knob("replicas={:g}", [8.0, 6.0], 0.5, fixed)
    found = search_knob("static", knob, [1, 4], heavy_bench(), extensions=0)
    assert [run.setting for run in found.tried] == [
        "replicas=8",
        "replicas=6",
        "replicas=8, minReplicas=4",
        "replicas=6, minReplicas=4",
    ]


@pytest.mark.parametrize(
    ("label", "parsed"),
    [("queueDepthPerReplica=2", (2.0, 1)), ("queueDepthPerReplica=0.5, minReplicas=4", (0.5, 4))],
)
def test_a_tokenfleet_label_reads_back_as_its_queue_target_and_floor(
    label: str, parsed: tuple[float, int]
) -> None:
    assert _tokenfleet_setting(label) == parsed


def test_a_floored_setting_starts_with_its_floor_running() -> None:
    records = [traces.TraceRecord(float(t), 300, 20) for t in range(0, 120, 4)]  # light: one replica's work
    bench = Bench(records, Slo(2.0, 0.1), SimConfig(variants=(H100,)), 180.0, [1, 1, 1])
    runs = [
        run_setting(bench, Setting("no floor", lambda: baselines.Hpa("h100", 1.0))),
        run_setting(bench, Setting("floor", lambda: baselines.Hpa("h100", 1.0, min_replicas=3), 3)),
    ]
    first_ready = [run.result.timeline[0].ready["h100"] for run in runs]
    assert first_ready == [1, 3]
    # The floor is paid for: three replicas for the whole horizon against about one.
    hours = [float(run.summary["gpu_hours"]) for run in runs]
    assert hours[1] == pytest.approx(3 * 180 / 3600, rel=0.01) and hours[0] < hours[1] / 2


def test_minute_misses_run_each_minute_alone_until_a_size_misses_none() -> None:
    # Minute 0: the heavy load (two replicas miss, three do not); minute 1: silent; minute 2: one request.
    records = [traces.TraceRecord(i / 20, 4000, 50) for i in range(60 * 20)]
    records.append(traces.TraceRecord(150.0, 100, 10))
    bench = Bench(records, Slo(2.0, 0.1), SimConfig(variants=(H100,)), 180.0)
    misses = minute_misses(bench, "h100", cap=8)
    assert misses[0][0] > misses[0][1] > 0 and misses[0][-1] == 0
    assert misses[1] == [0] and misses[2] == [0]
    # The cap ends a row that still misses.
    assert minute_misses(bench, "h100", cap=1)[0] == [misses[0][0]]


def test_oracle_search_finds_a_plan_meeting_the_slo_that_follows_the_load() -> None:
    # One heavy minute, one silent, one with a single request.
    records = [traces.TraceRecord(i / 20, 4000, 50) for i in range(60 * 20)]
    records.append(traces.TraceRecord(150.0, 100, 10))
    bench = Bench(records, Slo(2.0, 0.1), SimConfig(variants=(H100,)), 180.0)
    misses = minute_misses(bench, "h100", cap=4)
    demand = [0.5, 0.0, 0.01]  # the load-proportional family sizes each minute's work alike
    searched = search_oracle(bench, "h100", demand, misses, cap=4, steps=3)
    best = searched.search.best
    assert best.meets_slo
    assert searched.best_plan[0] >= 3 and searched.best_plan[1:] == [1, 1]
    assert best.summary["gpu_hours"] <= searched.by_utilisation.summary["gpu_hours"]
    # The families meet on the same plan here, and no plan runs twice.
    assert len({tuple(p) for p in searched.plans.values()}) == len(searched.search.tried)
