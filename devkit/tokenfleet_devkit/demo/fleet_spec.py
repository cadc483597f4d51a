"""The demo's InferenceDeployments, as plain dicts (pure).

The CRD chooses the engine backend per fleet (`spec.engine.backend`), not per accelerator variant, so
the demo runs two fleets side by side in one namespace:
- `code`: the autoscaled fleet, sim backend, on two variants (H100 at $4/h, L40S at $1.2/h), from zero
  up to `max_replicas` and back to zero;
- `tiny`: one torch-backend worker serving the tiny random Llama with the real engine.
Both fleets load the same local checkpoint (the sim backend needs its tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenfleet_devkit.demo.workload import SIM_FLEET, TORCH_FLEET

API_VERSION = "tokenfleet.io/v1alpha1"
KIND = "InferenceDeployment"
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"
L40S_PRODUCT = "NVIDIA-L40S"


@dataclass(frozen=True)
class Variant:
    name: str
    hourly_cost: float
    product: str
    max_replicas: int


@dataclass(frozen=True)
class FleetNames:
    """Resource name and served model name of each of the demo's fleets."""

    sim: str = "code"
    torch: str = "tiny"

    def resource(self, fleet: str) -> str:
        return {SIM_FLEET: self.sim, TORCH_FLEET: self.torch}[fleet]

    def model(self, fleet: str) -> str:
        return {SIM_FLEET: "code-sim", TORCH_FLEET: "tiny-llama"}[fleet]


@dataclass(frozen=True)
class ScalingKnobs:
    """Autoscaling settings short enough for a demo that lasts minutes, not hours."""

    max_replicas: int = 6
    queue_per_replica: float = 2.0
    interval_s: int = 2
    scale_down_stabilization_s: int = 8
    scale_to_zero_after_s: int = 15
    drain_timeout_s: int = 15


SIM_VARIANTS = (
    Variant("h100", 4.0, H100_PRODUCT, 3),
    Variant("l40s", 1.2, L40S_PRODUCT, 3),
)
TORCH_VARIANT = Variant("l40s", 1.2, L40S_PRODUCT, 1)


def _accelerator(variant: Variant) -> dict[str, Any]:
    return {
        "name": variant.name,
        "resourceName": "nvidia.com/gpu",
        "count": 1,
        "hourlyCost": variant.hourly_cost,
        "maxReplicas": variant.max_replicas,
        # The fake GPU nodes run each worker as a local process, which computes on the CPU.
        "device": "cpu",
        "nodeSelector": {"nvidia.com/gpu.product": variant.product},
    }


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "tokenfleet-demo"}}


def sim_fleet(
    names: FleetNames, namespace: str, model_dir: Path, strategy: str, knobs: ScalingKnobs
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": _metadata(names.sim, namespace),
        "spec": {
            "model": {
                "name": names.model(SIM_FLEET),
                "uri": f"file://{model_dir}",
                "dtype": "float32",
                "maxModelLen": 1024,
            },
            "engine": {
                "backend": "sim",
                "maxNumSeqs": 8,
                "maxBatchedTokens": 1024,
                "drainTimeoutSeconds": knobs.drain_timeout_s,
            },
            "accelerators": [_accelerator(v) for v in SIM_VARIANTS],
            "autoscaling": {
                "mode": "builtin",
                "minReplicas": 0,
                "maxReplicas": knobs.max_replicas,
                "scaleToZeroAfterSeconds": knobs.scale_to_zero_after_s,
                "targets": {"queueDepthPerReplica": knobs.queue_per_replica, "kvCacheUtilization": 0.8},
                "scaleUp": {"stabilizationSeconds": 0, "maxStep": 2},
                "scaleDown": {"stabilizationSeconds": knobs.scale_down_stabilization_s, "maxStep": 2},
                "metrics": {"source": "direct", "intervalSeconds": knobs.interval_s},
            },
            "routing": {"strategy": strategy, "replicas": 1},
        },
    }


def torch_fleet(names: FleetNames, namespace: str, model_dir: Path, strategy: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": _metadata(names.torch, namespace),
        "spec": {
            "model": {"name": names.model(TORCH_FLEET), "uri": f"file://{model_dir}", "dtype": "float32"},
            "engine": {
                "backend": "torch",
                "maxNumSeqs": 8,
                "maxBatchedTokens": 1024,
                "drainTimeoutSeconds": 10,
            },
            "accelerators": [_accelerator(TORCH_VARIANT)],
            "autoscaling": {
                "mode": "builtin",
                "minReplicas": 1,
                "maxReplicas": 1,
                "metrics": {"source": "direct", "intervalSeconds": 2},
            },
            "routing": {"strategy": strategy, "replicas": 1},
        },
    }


def hourly_costs(fleet: str) -> dict[str, float]:
    """Hourly cost of one replica of each variant of a fleet."""
    variants = SIM_VARIANTS if fleet == SIM_FLEET else (TORCH_VARIANT,)
    return {v.name: v.hourly_cost for v in variants}
