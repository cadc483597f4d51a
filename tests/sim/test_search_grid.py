"""The benchmark's search grid: thresholds crossed with minReplicas floors, tried on the same arrivals."""

from __future__ import annotations

import pytest

from tokenfleet_devkit import traces
from tokenfleet_devkit.sim import baselines
from tokenfleet_devkit.sim.benchmark import _floors, _hpa, _tokenfleet_setting, _with_floors
from tokenfleet_devkit.sim.fleet import SimConfig, VariantSetup
from tokenfleet_devkit.sim.metrics import Slo
from tokenfleet_devkit.sim.perf_model import gpu_model
from tokenfleet_devkit.sim.runs import Bench, Setting, search

pytestmark = pytest.mark.unit

H100 = VariantSetup("h100", gpu_model("h100"), 4.0, cold_start_s=30.0)


def test_floors_are_none_and_half_the_peak_fleet() -> None:
    assert _floors(8, smoke=False) == [1, 4]
    assert _floors(5, smoke=False) == [1, 3]
    assert _floors(2, smoke=False) == [1]  # half of 2 is no floor
    assert _floors(8, smoke=True) == [1]


def test_every_threshold_is_tried_at_every_floor_and_builds_with_it() -> None:
    grid = _with_floors([("rps/replica=2", _hpa(2.0)), ("rps/replica=4", _hpa(4.0))], [1, 3])
    assert [(s.label, s.min_replicas) for s in grid] == [
        ("rps/replica=2", 1),
        ("rps/replica=4", 1),
        ("rps/replica=2, minReplicas=3", 3),
        ("rps/replica=4, minReplicas=3", 3),
    ]
    built = grid[3].build()
    assert isinstance(built, baselines.Hpa) and (built.min_replicas, built.target) == (3, 4.0)


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
    found = search(
        "hpa-rps",
        [
            Setting("no floor", lambda: baselines.Hpa("h100", 1.0)),
            Setting("floor", lambda: baselines.Hpa("h100", 1.0, min_replicas=3), 3),
        ],
        bench,
    )
    first_ready = [run.result.timeline[0].ready["h100"] for run in found.tried]
    assert first_ready == [1, 3]
    # The floor is paid for: three replicas for the whole horizon against about one.
    hours = [float(run.summary["gpu_hours"]) for run in found.tried]
    assert hours[1] == pytest.approx(3 * 180 / 3600, rel=0.01) and hours[0] < hours[1] / 2
