"""Two operator replicas peered through a KopfPeering object: only the higher-priority one acts; when it
stops, the other takes over. "Acts" is measured by each operator's own decision counter."""

from __future__ import annotations

import copy
import signal
import time

import pytest

from tests.conftest import Cluster
from tests.operator.conftest import OperatorProcess, OperatorStarter
from tests.operator.kube_helpers import FLEET, ROOT, apply, get_json, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PEERING_CRDS = ROOT / "manifests" / "crds" / "kopf.dev-peerings.yaml"


def acting(operators: list[OperatorProcess], seconds: float) -> list[bool]:
    """Which operators made scaling decisions during the next `seconds`."""
    before = [o.decisions() for o in operators]
    time.sleep(seconds)
    return [o.decisions() > b for o, b in zip(operators, before, strict=True)]


def test_two_peered_operators_never_both_act(crd: Cluster, operator_process: OperatorStarter) -> None:
    cluster = crd
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    with cluster.namespace("peer") as ns:
        peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "tokenfleet"}}
        apply(cluster, ns, peering)
        fleet = copy.deepcopy(FLEET)
        fleet["spec"]["autoscaling"]["metrics"] = {"intervalSeconds": 1}
        low = operator_process(ns, peering="tokenfleet", priority=100)
        apply(cluster, ns, fleet)
        wait_for("children", lambda: get_json(cluster, "deployments", "-n", ns)["items"], timeout=60)
        wait_for("the first operator to act", lambda: low.decisions() > 0, timeout=30)

        high = operator_process(ns, peering="tokenfleet", priority=200)
        wait_for("the second operator to serve metrics", lambda: _answers(high), timeout=60)
        # The low one pauses as soon as it sees a higher-priority peer; give the handover a few seconds.
        wait_for("the handover", lambda: acting([low, high], 3.0) == [False, True], timeout=60)
        for _ in range(2):
            assert acting([low, high], 2.0) == [False, True]
        assert b"Pausing operations in favour of" in low.log.read_bytes()

        # The leader leaves (gracefully, so it withdraws from the peering): the other one resumes.
        high.process.send_signal(signal.SIGTERM)
        high.process.wait(timeout=30)
        wait_for("the first operator to resume", lambda: acting([low], 3.0) == [True], timeout=60)


def _answers(operator: OperatorProcess) -> bool:
    try:
        operator.metric("tokenfleet_operator_fleets")
    except Exception:
        return False
    return True
