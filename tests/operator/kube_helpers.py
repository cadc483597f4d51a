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
