"""Metrics unavailable (the fleet's Prometheus down): the operator holds the replicas, says
MetricsStale=True, and neither scales down nor to zero on missing data; once metrics are back the
condition clears and the idle fleet shrinks, which shows the hold was the missing data's doing.

(Workers' /metrics failing with direct scrapes is the same "no data" outcome of the metrics source:
tests/operator/test_metrics_source.py::test_direct_scrape_without_answers_is_no_data, and the policy's
hold on it: tests/operator/test_policy.py::test_missing_or_old_metrics_never_scale_down_or_to_zero.)"""

from __future__ import annotations

import time

import pytest

from tests.operator.kube_helpers import free_port, scaling_events
from tests.reliability import report
from tests.reliability.fleet import SharedFleet
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOLD_SECONDS = 10.0  # well past scaleToZeroAfterSeconds (4) and the scale-down window (2)


def test_metrics_outage_holds_replicas_flags_stale_and_recovers(shared_fleet: SharedFleet) -> None:
    fleet = shared_fleet
    figures = report.ScenarioFigures("metrics_unavailable")
    fleet.set_autoscaling(minReplicas=2)
    fleet.wait_ready(2)
    generation = fleet.deployment()["metadata"]["generation"]
    scale_downs = sum(e["reason"] == "ScaledDown" for e in scaling_events(fleet.cluster, fleet.namespace))

    # Nothing listens on this port: Prometheus is down. With data, this idle fleet would go to zero.
    prometheus_down = f"http://127.0.0.1:{free_port()}"
    fleet.set_autoscaling(
        minReplicas=0,
        scaleToZeroAfterSeconds=4,
        metrics={"source": "prometheus", "url": prometheus_down, "intervalSeconds": 1},
    )
    figures.faults_injected += 1
    stale = wait_for("MetricsStale=True", lambda: fleet.condition("MetricsStale").get("status") == "True", 30)
    assert stale
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        deployment = fleet.deployment()
        assert deployment["spec"]["replicas"] == 2, "scaled on missing data"
        assert deployment["metadata"]["generation"] == generation
        assert fleet.condition("MetricsStale").get("status") == "True"
        time.sleep(1.0)
    events = scaling_events(fleet.cluster, fleet.namespace)
    assert sum(e["reason"] == "ScaledDown" for e in events) == scale_downs
    assert fleet.status().get("readyReplicas") == 2
    figures.faults_survived += 1

    # Metrics are back (direct scrapes): the condition clears and the idle fleet may shrink again.
    fleet.set_autoscaling(metrics={"source": "direct", "url": None, "intervalSeconds": 1})
    wait_for("MetricsStale=False", lambda: fleet.condition("MetricsStale").get("status") == "False", 30)
    wait_for("the idle fleet to shrink", lambda: fleet.deployment()["spec"]["replicas"] < 2, 60)
    fleet.set_autoscaling(minReplicas=1, scaleToZeroAfterSeconds=None)
    figures.details = {"held_seconds": HOLD_SECONDS, "replicas_held": 2, "writes_while_stale": 0}
    report.write(figures)
