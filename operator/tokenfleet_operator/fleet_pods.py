"""Which pods a fleet has and in what state, and how their samples become a FleetSnapshot (pure).

A pod is `ready` (Ready condition true, has an IP: scrape it), `starting` (created, not ready yet:
capacity that is coming), `unschedulable` (the scheduler said so) or terminating (ignored: it is
draining and will not be capacity again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenfleet_operator.child_meta import LABEL_COMPONENT, LABEL_VARIANT
from tokenfleet_operator.metrics_parsing import (
    PodSample,
    add_buckets,
    bucket_deltas,
    counter_rate,
    histogram_quantile,
)
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

READY = "ready"
STARTING = "starting"
UNSCHEDULABLE = "unschedulable"
TERMINATING = "terminating"


@dataclass(frozen=True)
class PodInfo:
    name: str
    variant: str  # empty for router pods
    ip: str
    state: str  # one of the constants above
    port: int = 8000


@dataclass(frozen=True)
class FleetTarget:
    namespace: str
    name: str
    profile: str
    block_size: int
    workers: tuple[PodInfo, ...]
    routers: tuple[PodInfo, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ready_workers(self) -> tuple[PodInfo, ...]:
        return tuple(p for p in self.workers if p.state == READY)


def pod_state(pod: Mapping[str, Any]) -> str:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return TERMINATING
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return UNSCHEDULABLE
    if conditions.get("Ready", {}).get("status") == "True" and status.get("podIP"):
        return READY
    return STARTING


def pod_info(pod: Mapping[str, Any], port: int) -> PodInfo:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return PodInfo(
        name=meta.get("name", ""),
        variant=labels.get(LABEL_VARIANT, ""),
        ip=(pod.get("status") or {}).get("podIP") or "",
        state=pod_state(pod),
        port=port,
    )


def split_pods(
    pods: Sequence[Mapping[str, Any]], worker_port: int, router_port: int
) -> tuple[list[PodInfo], list[PodInfo]]:
    """Worker and router pods of one fleet, by the component label."""
    workers, routers = [], []
    for pod in pods:
        component = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT)
        if component == "worker":
            workers.append(pod_info(pod, worker_port))
        elif component == "router":
            routers.append(pod_info(pod, router_port))
    return workers, routers


def assemble_snapshot(
    target: FleetTarget,
    variants: Sequence[str],
    now_samples: Mapping[str, PodSample],
    before_samples: Mapping[str, tuple[float, PodSample]],
    now: float,
    router_held: int,
    dispatched_per_second: float | None = None,
) -> FleetSnapshot:
    """A FleetSnapshot from this scrape's samples by pod name and the previous scrape's (time, sample).

    Ready pods that could not be scraped are left out of `ready` and their variant's sums, so the load
    per replica is measured on the pods that answered.
    """
    deltas = []
    result = []
    for variant in variants:
        pods = [p for p in target.workers if p.variant == variant]
        scraped = [p for p in pods if p.state == READY and p.name in now_samples]
        prompt_rate = gen_rate = 0.0
        for p in scraped:
            sample = now_samples[p.name]
            earlier = before_samples.get(p.name)
            if earlier is not None:
                seconds = now - earlier[0]
                prompt_rate += counter_rate(
                    earlier[1].prompt_tokens_total, sample.prompt_tokens_total, seconds
                )
                gen_rate += counter_rate(
                    earlier[1].generation_tokens_total, sample.generation_tokens_total, seconds
                )
                deltas.append(bucket_deltas(earlier[1].ttft_buckets, sample.ttft_buckets))
        samples = [now_samples[p.name] for p in scraped]
        capacities = [s.kv_blocks_total * target.block_size for s in samples if s.kv_blocks_total > 0]
        result.append(
            VariantSnapshot(
                name=variant,
                ready=len(scraped),
                starting=sum(1 for p in pods if p.state == STARTING),
                unschedulable=sum(1 for p in pods if p.state == UNSCHEDULABLE),
                waiting=sum(s.waiting for s in samples),
                running=sum(s.running for s in samples),
                kv_usage=sum(s.kv_usage for s in samples) / len(samples) if samples else 0.0,
                tokens_in_flight=sum(s.tokens_in_flight for s in samples),
                prompt_tokens_per_second=prompt_rate,
                generation_tokens_per_second=gen_rate,
                kv_capacity_tokens_per_replica=sum(capacities) / len(capacities) if capacities else 0.0,
            )
        )
    ttft = histogram_quantile(0.95, add_buckets(deltas)) if deltas else None
    loads = tuple(sorted((name, s.waiting + s.running) for name, s in now_samples.items()))
    return FleetSnapshot(
        time=now,
        variants=tuple(result),
        ttft_p95_seconds=ttft,
        router_held=router_held,
        pod_loads=loads,
        dispatched_per_second=dispatched_per_second,
    )


def deletion_costs(workers: Sequence[PodInfo], pod_loads: Sequence[tuple[str, float]]) -> dict[str, int]:
    """`controller.kubernetes.io/pod-deletion-cost` per worker: the least-loaded pods go first.

    Pods not ready yet cost least of all (nothing to drain); ready pods cost their request count, so the
    ReplicaSet controller removes the idlest pods when replicas drop.
    """
    loads = dict(pod_loads)
    costs = {}
    for pod in workers:
        if pod.state == TERMINATING:
            continue
        costs[pod.name] = round(loads.get(pod.name, 0.0)) if pod.state == READY else -1
    return costs
