"""Helpers for the packaging tests that run against the local control plane."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Cluster


def free_port() -> int:
    """A port free on every loopback address: launched pods bind 0.0.0.0 or their own 127.x IP."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pods(cluster: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "pods", "-n", ns, "-l", selector)["items"])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(cluster: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    return [
        p for p in pods(cluster, ns, selector) if is_ready(p) and not p["metadata"].get("deletionTimestamp")
    ]


def make_model(directory: Path) -> Path:
    """A tiny random checkpoint the workers load (the sim backend still needs its tokenizer)."""
    if not (directory / "config.json").exists():
        command = [sys.executable, "-m", "tokenfleet_worker.make_model", "--preset", "tiny", str(directory)]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    return directory


def inference_deployment(ns: str, name: str, model_dir: Path, **autoscaling: Any) -> dict[str, Any]:
    """A small sim-backend fleet on the fake H100 and L40S nodes."""
    return {
        "apiVersion": "tokenfleet.io/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": {"name": name, "uri": f"file://{model_dir}", "maxModelLen": 512},
            "engine": {"backend": "sim", "maxNumSeqs": 16, "drainTimeoutSeconds": 5},
            "accelerators": [
                {
                    "name": "h100",
                    "hourlyCost": 4.0,
                    "device": "cpu",
                    "maxReplicas": 2,
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                },
                {
                    "name": "l40s",
                    "hourlyCost": 1.2,
                    "device": "cpu",
                    "maxReplicas": 2,
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
                },
            ],
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "budget": {"maxHourlyCost": 20},
                "targets": {"ttftP95Seconds": 1.0},
                "metrics": {"intervalSeconds": 2},
                **autoscaling,
            },
            "routing": {"replicas": 1},
        },
    }


def apply(cluster: Cluster, doc: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
