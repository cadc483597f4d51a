"""Pod states, snapshot assembly from samples (rates, percentiles, KV capacity) and deletion costs."""

from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_operator.fleet_pods import (
    FleetTarget,
    PodInfo,
    assemble_snapshot,
    deletion_costs,
    pod_state,
    split_pods,
)
from tokenfleet_operator.metrics_parsing import PodSample

pytestmark = pytest.mark.unit


def pod(
    name: str, *, ready: bool = False, unschedulable: bool = False, deleting: bool = False
) -> dict[str, Any]:
    conditions = []
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})
    if ready:
        conditions.append({"type": "Ready", "status": "True"})
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"tokenfleet.io/component": "worker", "tokenfleet.io/variant": "h100"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": conditions, "podIP": "127.64.0.9" if ready else None}}


def test_pod_states() -> None:
    assert pod_state(pod("a", ready=True)) == "ready"
    assert pod_state(pod("b")) == "starting"
    assert pod_state(pod("c", unschedulable=True)) == "unschedulable"
    assert pod_state(pod("d", ready=True, deleting=True)) == "terminating"


def test_split_by_component() -> None:
    router = {"metadata": {"name": "r", "labels": {"tokenfleet.io/component": "router"}}, "status": {}}
    workers, routers = split_pods([pod("a", ready=True), router], 8000, 8080)
    assert [w.name for w in workers] == ["a"] and workers[0].variant == "h100" and workers[0].port == 8000
    assert [r.name for r in routers] == ["r"] and routers[0].port == 8080


def test_assemble_snapshot_rates_and_percentiles() -> None:
    workers = (
        PodInfo("a", "h100", "127.64.0.1", "ready"),
        PodInfo("b", "h100", "127.64.0.2", "ready"),
        PodInfo("c", "h100", "", "starting"),
        PodInfo("d", "a100", "", "unschedulable"),
    )
    target = FleetTarget("ns", "chat", "tokenfleet", 16, workers)
    buckets_before = ((0.5, 10.0), (1.0, 10.0), (float("inf"), 10.0))
    buckets_now = ((0.5, 10.0), (1.0, 30.0), (float("inf"), 30.0))
    before = {
        "a": (
            0.0,
            PodSample(prompt_tokens_total=100, generation_tokens_total=50, ttft_buckets=buckets_before),
        )
    }
    now = {
        "a": PodSample(
            waiting=2,
            running=4,
            kv_usage=0.6,
            prompt_tokens_total=600,
            generation_tokens_total=1050,
            kv_blocks_total=100,
            ttft_buckets=buckets_now,
        ),
        "b": PodSample(waiting=1, running=2, kv_usage=0.2, kv_blocks_total=300),
    }
    snap = assemble_snapshot(target, ["h100", "a100"], now, before, now=10.0, router_held=3)
    h100, a100 = snap.variants
    assert (h100.ready, h100.starting, h100.unschedulable) == (2, 1, 0)
    assert (a100.ready, a100.unschedulable) == (0, 1)
    assert h100.waiting == 3 and h100.running == 6 and h100.kv_usage == pytest.approx(0.4)
    assert h100.prompt_tokens_per_second == 50 and h100.generation_tokens_per_second == 100
    assert h100.kv_capacity_tokens_per_replica == pytest.approx(200 * 16)
    assert snap.ttft_p95_seconds == pytest.approx(0.5 + 0.5 * 0.95)
    assert snap.router_held == 3 and dict(snap.pod_loads) == {"a": 6, "b": 3}


def test_unscraped_ready_pods_are_left_out() -> None:
    workers = (PodInfo("a", "h100", "ip", "ready"), PodInfo("b", "h100", "ip", "ready"))
    target = FleetTarget("ns", "chat", "tokenfleet", 16, workers)
    snap = assemble_snapshot(target, ["h100"], {"a": PodSample(waiting=4)}, {}, 1.0, 0)
    assert snap.variants[0].ready == 1 and snap.ttft_p95_seconds is None


def test_deletion_costs_put_idle_and_unready_pods_first() -> None:
    workers = [
        PodInfo("busy", "h100", "ip", "ready"),
        PodInfo("idle", "h100", "ip", "ready"),
        PodInfo("new", "h100", "", "starting"),
        PodInfo("gone", "h100", "", "terminating"),
    ]
    costs = deletion_costs(workers, [("busy", 12.0), ("idle", 0.0)])
    assert costs == {"busy": 12, "idle": 0, "new": -1}
    assert sorted(costs, key=costs.__getitem__) == ["new", "idle", "busy"]
