"""The reconciler's pure helpers: how much history a fleet keeps, and pruning it."""

from __future__ import annotations

import pytest

from tokenfleet_operator.forecast import WARMUP_SECONDS
from tokenfleet_operator.policy import BURST_MEMORY, history_seconds
from tokenfleet_operator.reconciler import FleetState, iso
from tokenfleet_operator.resource import InferenceDeploymentSpec, parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot

pytestmark = pytest.mark.unit


def spec(**autoscaling: object) -> InferenceDeploymentSpec:
    return parse_spec(
        {
            "model": {"name": "m", "uri": "pvc://m/x"},
            "accelerators": [{"name": "a", "hourlyCost": 1}],
            "autoscaling": autoscaling,
        }
    )


def test_history_covers_every_window() -> None:
    # The burst floor remembers bursts a little longer than the scale-down window.
    assert history_seconds(spec()) == BURST_MEMORY * 300 + WARMUP_SECONDS + 10
    assert history_seconds(spec(minReplicas=0, scaleToZeroAfterSeconds=900)) == 900 + WARMUP_SECONDS + 10
    assert (
        history_seconds(spec(scaleDown={"stabilizationSeconds": 0}, metrics={"intervalSeconds": 10}))
        == 120 + WARMUP_SECONDS + 20
    )


def test_remember_prunes_old_snapshots() -> None:
    state = FleetState()
    for t in range(0, 100, 10):
        state.remember(FleetSnapshot(time=float(t)), keep_seconds=30)
    assert [s.time for s in state.history] == [60.0, 70.0, 80.0, 90.0]


def test_iso() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
