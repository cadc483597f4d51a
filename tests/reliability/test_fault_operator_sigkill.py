"""The operator killed (SIGKILL) in the middle of a scale-down, and started again: the new process
finishes the decision exactly once (one more Deployment write, one more ScaledDown Event), never
scales back up (no oscillation), and the status ends truthful.

The same fault during a scale-up is tests/operator/test_e2e_restart.py::
test_operator_restart_mid_scale_up_resumes_without_duplicate_actions."""

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
from tests.operator.kube_helpers import FLEET, apply, condition, fleet_status, get_json, scaling_events
from tests.reliability import report
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def shrinking_fleet(model_dir: Path) -> dict[str, Any]:
    fleet = copy.deepcopy(FLEET)
    fleet["spec"]["model"] = {"name": "tiny", "uri": f"file://{model_dir}"}
    fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
    fleet["spec"]["autoscaling"] = {
        "minReplicas": 3,
        "maxReplicas": 4,
        # One pod per step, steps a few seconds apart: there is a moment between two writes to kill it.
        "scaleDown": {"stabilizationSeconds": 3, "maxStep": 1},
        "metrics": {"intervalSeconds": 1},
    }
    return fleet


def replicas_and_generation(cluster: Cluster, ns: str) -> tuple[int, int]:
    deployment = get_json(cluster, "deployment", "chat-worker-l40s", "-n", ns)
    return int(deployment["spec"]["replicas"]), int(deployment["metadata"]["generation"])


def test_operator_killed_mid_scale_down_is_finished_once_by_its_successor(
    crd: Cluster, operator_process: OperatorStarter, tiny_model: Path
) -> None:
    cluster = crd
    figures = report.ScenarioFigures("operator_sigkill_mid_scale_down")
    with cluster.namespace("opkill") as ns:
        first = operator_process(ns)
        apply(cluster, ns, shrinking_fleet(tiny_model))
        wait_for("three ready workers", lambda: fleet_status(cluster, ns).get("readyReplicas") == 3, 150)
        _, generation = replicas_and_generation(cluster, ns)

        # Order the scale-down (3 -> 1, one step at a time); kill the operator after its first step.
        patch = json.dumps({"spec": {"autoscaling": {"minReplicas": 1}}})
        cluster.kubectl("patch", "infdep", "chat", "-n", ns, "--type=merge", "-p", patch)
        wait_for("the first step down", lambda: replicas_and_generation(cluster, ns)[0] == 2, 60, every=0.2)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        figures.faults_injected += 1
        assert replicas_and_generation(cluster, ns) == (2, generation + 1), "killed too late: it went on"

        second = operator_process(ns)
        wait_for(
            "the new operator to finish the scale-down",
            lambda: condition(cluster, ns, "Progressing").get("message") == "1 worker(s) ready as requested",
            timeout=120,
        )
        time.sleep(4)  # more intervals of the new operator: nothing more may happen
        assert second.process.poll() is None
        assert replicas_and_generation(cluster, ns) == (1, generation + 2), "not exactly one more write"
        assert second.metric("tokenfleet_operator_scaling_decisions_total", direction="down") == 1
        assert second.metric("tokenfleet_operator_scaling_decisions_total", direction="up") == 0
        reasons = [e["reason"] for e in scaling_events(cluster, ns)]
        assert "ScaledUp" not in reasons[reasons.index("ScaledDown") :], reasons
        # The successor's step has its Event; the killed operator's may have died with it, since a tick
        # writes the Deployment first and posts the Event three API calls later.
        assert 1 <= reasons.count("ScaledDown") <= 2, reasons
        status = fleet_status(cluster, ns)
        assert status.get("readyReplicas") == 1 and status.get("replicas") == 1, status
        assert get_json(cluster, "infdep", "chat", "-n", ns)["spec"]["replicas"] == 1
        pods = get_json(cluster, "pods", "-n", ns, "-l", "tokenfleet.io/component=worker")["items"]
        assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 1
        figures.faults_survived += 1
        figures.details = {
            "deployment_writes_after_restart": 1,
            "scale_ups": 0,
            "scaled_down_events": reasons.count("ScaledDown"),
        }
    report.write(figures)
