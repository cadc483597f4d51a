"""What the real fleet and the simulator share in a validation run (pure): arrivals, fleet spec, engine.

One `ValidationSetup` feeds both sides, so they cannot drift apart:
- arrivals: an excerpt of a real trace (default: Azure code, trace seconds 510-720, a burst and its
  lull), thinned to `rate_scale` of its requests (each kept by chance, seeded), prompts scaled by
  `prompt_scale` and capped, outputs capped: the sim-backend workers then need between 1 and 4
  replicas. Few requests with long prompts and short answers put the load on the workers' (slept)
  prefill rather than on the client's and router's CPU, which the 2-core machine cannot spare;
- the InferenceDeployment document applied to the cluster; the simulator parses the same document's
  spec with the operator's own parser, so policy, interval and autoscaling settings are identical;
- the engine: both use the worker's sim-backend step-time profile (`SimProfile` defaults), its KV
  cache (`sim_num_blocks` x `blockSize` tokens), `maxNumSeqs` and `maxBatchedTokens`.
The cold start is not here: it is measured on the real fleet and handed to the simulator afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenfleet_devkit.traces import TraceRecord, scale_rate
from tokenfleet_worker.config import WorkerConfig
from tokenfleet_worker.sim import SimProfile

API_VERSION = "tokenfleet.io/v1alpha1"
FLEET_NAME = "simval"
MODEL_NAME = "simval"
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"


@dataclass(frozen=True)
class Arrival:
    at_s: float  # seconds after the replay starts
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ExcerptOptions:
    start_s: float = 510.0
    duration_s: float = 210.0
    rate_scale: float = 0.2
    prompt_scale: float = 0.25
    max_prompt_tokens: int = 512
    max_output_tokens: int = 16
    seed: int = 0

    def describe(self, trace: str) -> str:
        return (
            f"{trace} trace seconds {self.start_s:g}-{self.start_s + self.duration_s:g} at real speed; "
            f"{self.rate_scale:.0%} of requests kept (seed {self.seed}); prompts x{self.prompt_scale:g} "
            f"capped at {self.max_prompt_tokens}, outputs capped at {self.max_output_tokens} tokens"
        )


@dataclass(frozen=True)
class FleetSetup:
    variant: str = "h100"
    hourly_cost: float = 4.0
    min_replicas: int = 1
    max_replicas: int = 4
    interval_s: int = 2
    max_num_seqs: int = 8
    max_batched_tokens: int = 512
    block_size: int = 16
    max_model_len: int = 1024
    drain_timeout_s: int = 15
    queue_per_replica: float = 2.0
    kv_cache_utilization: float = 0.8
    scale_up_max_step: int = 2
    scale_down_stabilization_s: int = 10
    scale_down_max_step: int = 1
    strategy: str = "least-load"


@dataclass(frozen=True)
class ValidationSetup:
    arrivals: tuple[Arrival, ...]
    fleet: FleetSetup = field(default_factory=FleetSetup)
    profile: SimProfile = field(default_factory=SimProfile)
    sim_num_blocks: int = WorkerConfig.sim_num_blocks  # what every sim-backend worker allocates

    @property
    def kv_capacity_tokens(self) -> int:
        return self.sim_num_blocks * self.fleet.block_size

    @property
    def last_arrival_s(self) -> float:
        return self.arrivals[-1].at_s if self.arrivals else 0.0


def plan_arrivals(records: list[TraceRecord], options: ExcerptOptions) -> tuple[Arrival, ...]:
    """The excerpt's requests, thinned and length-scaled, on a clock starting at the excerpt's start."""
    start, end = options.start_s, options.start_s + options.duration_s
    window = [r for r in records if start <= r.arrival_s < end]
    kept = scale_rate(window, options.rate_scale, seed=options.seed) if options.rate_scale != 1 else window
    return tuple(
        Arrival(
            r.arrival_s - start,
            min(options.max_prompt_tokens, max(1, round(r.prompt_tokens * options.prompt_scale))),
            min(options.max_output_tokens, max(1, r.output_tokens)),
        )
        for r in kept
    )


def fleet_document(setup: FleetSetup, namespace: str, model_dir: Path) -> dict[str, Any]:
    """The InferenceDeployment both sides run: one sim-backend variant, autoscaled by queue and KV."""
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceDeployment",
        "metadata": {"name": FLEET_NAME, "namespace": namespace},
        "spec": {
            "model": {
                "name": MODEL_NAME,
                "uri": f"file://{model_dir}",
                "dtype": "float32",
                "maxModelLen": setup.max_model_len,
            },
            "engine": {
                "backend": "sim",
                "maxNumSeqs": setup.max_num_seqs,
                "maxBatchedTokens": setup.max_batched_tokens,
                "blockSize": setup.block_size,
                "drainTimeoutSeconds": setup.drain_timeout_s,
            },
            "accelerators": [
                {
                    "name": setup.variant,
                    "resourceName": "nvidia.com/gpu",
                    "count": 1,
                    "hourlyCost": setup.hourly_cost,
                    "maxReplicas": setup.max_replicas,
                    "device": "cpu",  # the fake GPU nodes run each worker as a local process
                    "nodeSelector": {"nvidia.com/gpu.product": H100_PRODUCT},
                }
            ],
            "autoscaling": {
                "mode": "builtin",
                "minReplicas": setup.min_replicas,
                "maxReplicas": setup.max_replicas,
                "targets": {
                    "queueDepthPerReplica": setup.queue_per_replica,
                    "kvCacheUtilization": setup.kv_cache_utilization,
                },
                "scaleUp": {"stabilizationSeconds": 0, "maxStep": setup.scale_up_max_step},
                "scaleDown": {
                    "stabilizationSeconds": setup.scale_down_stabilization_s,
                    "maxStep": setup.scale_down_max_step,
                },
                "metrics": {"source": "direct", "intervalSeconds": setup.interval_s},
            },
            "routing": {"strategy": setup.strategy, "replicas": 1},
        },
    }
