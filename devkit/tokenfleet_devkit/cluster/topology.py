"""The fake GPU fleet and the kwok configuration that animates it (pure: returns dicts).

Pods whose label `LOCAL_PROCESS_LABEL` is set are run as real local processes by the pod launcher,
so kwok must not mark them Ready or delete them itself: the launcher reflects the real process's
readiness and removes the pod once the process has exited, as a kubelet would. Every other pod gets
kwok's usual instant Running/Ready lifecycle.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

LOCAL_PROCESS_LABEL = "tokenfleet.io/component"
POD_NETWORK = "127.64.0.0/10"  # loopback: every pod IP is bindable on this host
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    gpus: int
    product: str
    cpu: str = "64"
    memory: str = "512Gi"


DEFAULT_POOLS = (
    NodePool("h100", 4, 8, "NVIDIA-H100-80GB-HBM3"),
    NodePool("l40s", 4, 4, "NVIDIA-L40S"),
)


NODES_PER_SLOT = 1024  # /24s per cluster: four second octets of the loopback pod network
_KNOWN_SLOTS = {"tokenfleet": 0, "tokenfleet-test": 1, "tokenfleet-demo": 2, "tokenfleet-demo-e2e": 3}


def pod_cidr(index: int) -> str:
    """A /24 per node inside the loopback pod network (127.64.0.0/24, 127.64.1.0/24, ...)."""
    return f"127.{64 + index // 256}.{index % 256}.0/24"


def cluster_slot(name: str) -> int:
    """Which part of the pod network a named cluster uses, so two local clusters running side by
    side never hand out the same pod IP (a request would reach the other cluster's process)."""
    if name in _KNOWN_SLOTS:
        return _KNOWN_SLOTS[name]
    return 4 + zlib.crc32(name.encode()) % 12


def gpu_node(pool: NodePool, ordinal: int, index: int) -> dict[str, Any]:
    name = f"gpu-{pool.name}-{ordinal}"
    capacity = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": "110",
        GPU_RESOURCE: str(pool.gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "tokenfleet.io/pool": pool.name,
                GPU_PRODUCT_LABEL: pool.product,
                "nvidia.com/gpu.count": str(pool.gpus),
            },
        },
        "spec": {"podCIDR": pod_cidr(index), "podCIDRs": [pod_cidr(index)]},
        "status": {
            "allocatable": capacity,
            "capacity": capacity,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
            "phase": "Running",
        },
    }


def gpu_nodes(pools: tuple[NodePool, ...] = DEFAULT_POOLS, start: int = 0) -> list[dict[str, Any]]:
    nodes, index = [], start
    for pool in pools:
        for ordinal in range(pool.count):
            nodes.append(gpu_node(pool, ordinal, index))
            index += 1
    return nodes


def _label_expr(operator: str) -> dict[str, Any]:
    return {"key": f'.metadata.labels.["{LOCAL_PROCESS_LABEL}"]', "operator": operator}


_POD_STARTED_STATUS = """\
{{ $now := Now }}
conditions:
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: PodScheduled}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: Ready, reason: ProcessStarting}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: ContainersReady, reason: ProcessStarting}
containerStatuses:
{{ range .spec.containers }}
- {image: {{ .image | Quote }}, name: {{ .name | Quote }}, ready: false, restartCount: 0,
   state: {waiting: {reason: ContainerCreating}}}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
{{ end }}
{{ with PodIPsWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def local_process_stage() -> dict[str, Any]:
    """Give a launcher-run pod its IP and a Running phase, but leave Ready to the launcher."""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "tokenfleet-local-process-start"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                    {"key": ".status.podIP", "operator": "DoesNotExist"},
                    _label_expr("Exists"),
                ]
            },
            "next": {"statusTemplate": _POD_STARTED_STATUS},
        },
    }


def exclude_local_process_pods(stage: dict[str, Any]) -> dict[str, Any]:
    """Restrict one of kwok's own pod stages to pods the launcher does not run."""
    if stage["spec"]["resourceRef"]["kind"] == "Pod":
        stage["spec"].setdefault("selector", {}).setdefault("matchExpressions", []).append(
            _label_expr("DoesNotExist")
        )
    return stage


def kwok_configuration() -> dict[str, Any]:
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        # A config file replaces kwok's option defaults wholesale, so the ones it needs are restated.
        "options": {
            "cidr": "127.127.0.0/16",
            "nodeIP": "127.0.0.1",
            "podPlayStageParallelism": 4,
            "nodePlayStageParallelism": 4,
            "nodeLeaseParallelism": 4,
            "nodeLeaseDurationSeconds": 40,
            "enablePodsOnNodeSyncStreamWatch": True,
        },
    }


def config_documents(kwok_stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything kwokctl's --config file holds: kwok's own stages, adjusted, plus ours.

    kwokctl drops all its default stages as soon as the config names one, so kwok's defaults are
    passed in (read from the kwok module source) and handed back with ours.
    """
    stages = [exclude_local_process_pods(s) for s in kwok_stages]
    return [kwok_configuration(), local_process_stage(), *stages]
