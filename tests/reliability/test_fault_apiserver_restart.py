"""kube-apiserver restarted under a running fleet: the operator and the router reconnect their watches
and carry on, with no process restarted and no write repeated.

After the restart a spec change must still be reconciled (so the operator's watch is back) and the
new worker pod must reach the router (so the router's pod watch is back)."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.operator.kube_helpers import scaling_events
from tests.reliability import report
from tests.reliability.fleet import SharedFleet, restart_count
from tokenfleet_devkit.cluster import control_plane

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def restarts(pods: list[dict[str, Any]]) -> dict[str, int]:
    """Pod uid -> container restarts, so a replaced pod shows as well as a restarted process."""
    return {pod["metadata"]["uid"]: restart_count(pod) for pod in pods}


def test_apiserver_restart_watches_reconnect_without_restarts_or_duplicate_writes(
    shared_fleet: SharedFleet,
) -> None:
    fleet = shared_fleet
    figures = report.ScenarioFigures("apiserver_restart")
    fleet.set_autoscaling(minReplicas=1)
    fleet.wait_ready(1)
    router_before = restarts(fleet.router_pods())
    workers_before = restarts(fleet.worker_pods())
    generation = fleet.deployment()["metadata"]["generation"]
    scaled_up = sum(e["reason"] == "ScaledUp" for e in scaling_events(fleet.cluster, fleet.namespace))

    control_plane.restart_apiserver(fleet.cluster.paths, down_seconds=2.0)
    figures.faults_injected += 1

    # A change made after the restart: only an operator whose watch is back sees it.
    fleet.set_autoscaling(minReplicas=2)
    fleet.wait_ready(2, timeout=90)  # ... and only a router whose watch is back uses the new pod
    client = openai.OpenAI(base_url=fleet.router_base(), api_key="unused", max_retries=0, timeout=30)
    for i in range(6):
        answer = client.completions.create(model="tiny", prompt=f"after restart {i}", max_tokens=4)
        assert answer.choices[0].finish_reason in ("length", "stop")
        figures.count("completed")
    time.sleep(3)  # a few more operator intervals: nothing may be written twice

    assert fleet.operator.poll() is None, "the operator process exited"
    assert restarts(fleet.router_pods()) == router_before, "the router pod restarted or was replaced"
    workers_after = restarts(fleet.worker_pods())
    assert {uid: workers_after[uid] for uid in workers_before} == workers_before
    deployment = fleet.deployment()
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["generation"] == generation + 1, "the Deployment was written more than once"
    events = scaling_events(fleet.cluster, fleet.namespace)
    assert sum(e["reason"] == "ScaledUp" for e in events) == scaled_up + 1, [e["message"] for e in events]
    figures.faults_survived += 1
    figures.details = {"deployment_writes": 1, "operator_restarts": 0, "router_restarts": 0}
    report.write(figures)
