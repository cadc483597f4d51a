"""An operator killed in the middle of a scale-up, and a new one started in its place: the new one
resumes from what the cluster says (the Deployment's replicas, the pods that are starting) and repeats
nothing — no second scale write, no second Event, no scale-down on its fresh (empty) history."""

from __future__ import annotations

import copy
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.operator.conftest import OperatorStarter
from tests.operator.kube_helpers import (
    FLEET,
    apply,
    condition,
    fleet_status,
    get_json,
    scaling_events,
    wait_for,
    worker_replicas,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def sim_fleet(model_dir: Path) -> dict[str, Any]:
    fleet = copy.deepcopy(FLEET)
    fleet["spec"]["model"] = {"name": "tiny", "uri": f"file://{model_dir}"}
    fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
    fleet["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 4,
        "scaleDown": {"stabilizationSeconds": 600},
        "metrics": {"intervalSeconds": 1},
    }
    return fleet


def test_operator_restart_mid_scale_up_resumes_without_duplicate_actions(
    crd: Cluster, operator_process: OperatorStarter, tiny_model: Path
) -> None:
    cluster = crd
    with cluster.namespace("restart") as ns:
        first = operator_process(ns)
        apply(cluster, ns, sim_fleet(tiny_model))
        wait_for(
            "one ready worker",
            lambda: fleet_status(cluster, ns).get("readyReplicas") == 1,
            timeout=120,
        )

        # Order a scale-up, and kill the operator the moment it has written it: the new pods are starting.
        patch = json.dumps({"spec": {"autoscaling": {"minReplicas": 3}}})
        cluster.kubectl("patch", "infdep", "chat", "-n", ns, "--type=merge", "-p", patch)
        wait_for("the scale-up write", lambda: worker_replicas(cluster, ns) == 3, timeout=60)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        deployment = get_json(cluster, "deployment", "chat-worker-l40s", "-n", ns)
        generation = deployment["metadata"]["generation"]
        pods = get_json(cluster, "pods", "-n", ns, "-l", "tokenfleet.io/component=worker")["items"]
        assert len(pods) == 3
        events_before = scaling_events(cluster, ns)

        second = operator_process(ns)
        wait_for(
            "three ready workers, reported by the new operator",
            lambda: condition(cluster, ns, "Progressing").get("message") == "3 worker(s) ready as requested",
            timeout=120,
        )
        time.sleep(3)  # a few more intervals of the resumed operator
        assert second.process.poll() is None
        assert second.decisions() >= 3
        assert second.metric("tokenfleet_operator_scaling_decisions_total", direction="up") == 0
        assert second.metric("tokenfleet_operator_scaling_decisions_total", direction="down") == 0
        after = get_json(cluster, "deployment", "chat-worker-l40s", "-n", ns)
        assert after["metadata"]["generation"] == generation, "the new operator wrote the Deployment again"
        assert after["spec"]["replicas"] == 3
        assert len(get_json(cluster, "pods", "-n", ns, "-l", "tokenfleet.io/component=worker")["items"]) == 3
        events_after = scaling_events(cluster, ns)
        assert len(events_after) == len(events_before) <= 2, [e["message"] for e in events_after]
        assert get_json(cluster, "infdep", "chat", "-n", ns)["spec"]["replicas"] == 3
