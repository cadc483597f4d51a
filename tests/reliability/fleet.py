"""One fleet on the local cluster for the cluster fault scenarios: a standalone operator process for its
own namespace, sim worker pods and a router pod, all real processes run by the cluster's pod launcher.

Each scenario first asks for the replicas it needs (`set_autoscaling` + `wait_ready`), so the scenarios
do not depend on each other's order.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Cluster
from tests.operator.kube_helpers import FLEET, apply, free_port, get_json, install_crd, router_url
from tests.waiting import wait_for
from tokenfleet_devkit.process_stop import stop_gracefully

FLEET_NAME = "chat"
WORKER_DEPLOYMENT = f"{FLEET_NAME}-worker-l40s"


def fleet_spec(model_dir: Path) -> dict[str, Any]:
    fleet = copy.deepcopy(FLEET)
    fleet["spec"]["model"] = {"name": "tiny", "uri": f"file://{model_dir}"}
    fleet["spec"]["engine"] = {"backend": "sim", "maxNumSeqs": 8, "maxBatchedTokens": 256}
    fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
    fleet["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "scaleDown": {"stabilizationSeconds": 2, "maxStep": 1},
        "metrics": {"intervalSeconds": 1},
    }
    return fleet


def restart_count(pod: dict[str, Any]) -> int:
    """Container restarts of a pod (the launcher restarts a pod's exited process as a kubelet would)."""
    return sum(int(c.get("restartCount", 0)) for c in pod.get("status", {}).get("containerStatuses", []))


@dataclass
class SharedFleet:
    cluster: Cluster
    namespace: str
    operator: subprocess.Popen[bytes]
    operator_log: Path

    def kubectl_patch(self, patch: dict[str, Any]) -> None:
        self.cluster.kubectl(
            "patch", "infdep", FLEET_NAME, "-n", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )

    def set_autoscaling(self, **fields: Any) -> None:
        self.kubectl_patch({"spec": {"autoscaling": fields}})

    def deployment(self) -> dict[str, Any]:
        """The worker Deployment ({"spec": {}, "metadata": {}} until the operator has made it)."""
        found = self.cluster.kubectl(
            "get", "deployment", WORKER_DEPLOYMENT, "-n", self.namespace, "-o", "json", check=False
        )
        return json.loads(found.stdout) if found.returncode == 0 else {"spec": {}, "metadata": {}}

    def worker_pods(self) -> list[dict[str, Any]]:
        selector = "tokenfleet.io/component=worker"
        return list(get_json(self.cluster, "pods", "-n", self.namespace, "-l", selector)["items"])

    def router_pods(self) -> list[dict[str, Any]]:
        selector = "tokenfleet.io/component=router"
        return list(get_json(self.cluster, "pods", "-n", self.namespace, "-l", selector)["items"])

    def status(self) -> dict[str, Any]:
        return dict(get_json(self.cluster, "infdep", FLEET_NAME, "-n", self.namespace).get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        conditions = self.status().get("conditions") or []
        return next((c for c in conditions if c.get("type") == kind), {})

    def router_base(self) -> str:
        """The router pod's OpenAI base URL (…/v1), once it is ready."""
        return str(wait_for("a ready router pod", lambda: router_url(self.cluster, self.namespace), 120))

    def router_fleet(self) -> dict[str, Any]:
        """The router's own view of its workers (GET /fleet); {} while it does not answer."""
        try:
            return dict(httpx.get(self.router_base().removesuffix("/v1") + "/fleet", timeout=5).json())
        except httpx.HTTPError:
            return {}

    def wait_ready(self, replicas: int, timeout: float = 120.0) -> None:
        """Until the Deployment asks for `replicas`, that many workers are ready, and the router uses them."""
        deadline = time.monotonic() + timeout
        seen: tuple[object, ...] = ()
        while time.monotonic() < deadline:
            router = self.router_fleet()
            seen = (
                self.deployment()["spec"].get("replicas"),
                self.status().get("readyReplicas"),
                router.get("available_workers"),
                router.get("workers"),
            )
            if seen[:3] == (replicas, replicas, replicas):
                return
            time.sleep(1.0)
        raise AssertionError(
            f"no {replicas} ready worker(s) in use by the router after {timeout:.0f}s; last seen "
            f"(deployment replicas, ready replicas, router available, router known) = {seen}"
        )


@contextlib.contextmanager
def start_shared_fleet(cluster: Cluster, model_dir: Path, log_dir: Path) -> Iterator[SharedFleet]:
    install_crd(cluster)
    with cluster.namespace("faults") as ns:
        log_path = log_dir / "operator.log"
        with log_path.open("wb") as log:
            operator = subprocess.Popen(
                [
                    *(sys.executable, "-m", "tokenfleet_operator", "--standalone", "--namespace", ns),
                    *("--kubeconfig", str(cluster.kubeconfig), "--metrics-port", str(free_port())),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        try:
            apply(cluster, ns, fleet_spec(model_dir))
            fleet = SharedFleet(cluster, ns, operator, log_path)
            fleet.wait_ready(1, timeout=180)
            yield fleet
        finally:
            stop_gracefully(operator)
