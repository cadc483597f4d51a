"""Shared helpers for the operator's end-to-end tests: kubectl JSON, polling, the CRD, a sample fleet."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crds" / "inferencedeployments.tokenfleet.io.yaml"

FLEET: dict[str, Any] = {
    "apiVersion": "tokenfleet.io/v1alpha1",
    "kind": "InferenceDeployment",
    "metadata": {"name": "chat"},
    "spec": {
        "model": {"name": "chat", "uri": "file:///nonexistent/tiny"},
        "engine": {"backend": "sim", "maxNumSeqs": 16, "maxBatchedTokens": 512},
        "accelerators": [
            {
                "name": "l40s",
                "hourlyCost": 1.5,
                "device": "cpu",
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
            },
            {
                "name": "h100",
                "hourlyCost": 4.0,
                "device": "cpu",
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            },
        ],
        "autoscaling": {"minReplicas": 0, "maxReplicas": 4, "metrics": {"intervalSeconds": 2}},
        "routing": {"replicas": 1},
    },
}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", *args, "-o", "json").stdout))


def apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/inferencedeployments.tokenfleet.io", "--timeout=60s"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def router_url(cluster: Cluster, ns: str) -> str | None:
    """The OpenAI base URL of a ready router pod of the namespace's fleet, or None while there is none."""
    pods = get_json(cluster, "pods", "-n", ns, "-l", "tokenfleet.io/component=router")["items"]
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") == "True" and pod["status"].get("podIP"):
            return f"http://{pod['status']['podIP']}:8080/v1"
    return None


def worker_replicas(cluster: Cluster, ns: str, variant: str = "l40s", fleet: str = "chat") -> int:
    deployment = get_json(cluster, "deployment", f"{fleet}-worker-{variant}", "-n", ns)
    return int(deployment["spec"].get("replicas", 0))


def condition(cluster: Cluster, ns: str, kind: str, fleet: str = "chat") -> dict[str, Any]:
    """One of the fleet's status conditions ({} while it has none of that type)."""
    status = get_json(cluster, "infdep", fleet, "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def scaling_events(cluster: Cluster, ns: str, fleet: str = "chat") -> list[dict[str, Any]]:
    """ScaledUp/ScaledDown/Rebalanced Events about the fleet, oldest first."""
    items = get_json(cluster, "events", "-n", ns, "--field-selector", f"involvedObject.name={fleet}")["items"]
    found = [e for e in items if e.get("reason") in ("ScaledUp", "ScaledDown", "Rebalanced")]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or "")


def fleet_status(cluster: Cluster, ns: str, fleet: str = "chat") -> dict[str, Any]:
    return dict(get_json(cluster, "infdep", fleet, "-n", ns).get("status") or {})


def workers(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    """The namespace's worker Deployments."""
    return list(get_json(cluster, "deployments", "-n", ns, "-l", "tokenfleet.io/component=worker")["items"])
