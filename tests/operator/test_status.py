"""Status, conditions and scaling Events built from decisions."""

from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_operator.placement import BUDGET_CAP, Limit
from tokenfleet_operator.policy import Decision
from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot
from tokenfleet_operator.status import build_status, conditions_for, scaling_event, status_changes

pytestmark = pytest.mark.unit

SPEC = parse_spec(
    {
        "model": {"name": "chat", "uri": "pvc://m/x"},
        "accelerators": [{"name": "h100", "hourlyCost": 4.0}, {"name": "l4", "hourlyCost": 1.0}],
    }
)
SNAP = FleetSnapshot(
    time=100,
    variants=(
        VariantSnapshot(name="h100", ready=2, waiting=6, kv_usage=0.456, generation_tokens_per_second=800),
        VariantSnapshot(name="l4", ready=0, unschedulable=1),
    ),
    router_held=2,
)


def decision(replicas: dict[str, int], previous: dict[str, int], **kw: Any) -> Decision:
    return Decision(
        replicas=replicas, previous=previous, reason="scale up 2->3: queue 4.0/replica (target 8)", **kw
    )


def conds(status: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in status["conditions"]}


def test_status_fields() -> None:
    d = decision({"h100": 2, "l4": 1}, {"h100": 2, "l4": 0}, cost_per_million_tokens=2.7777)
    status = build_status("chat", SPEC, d, SNAP, 7, {}, "2026-01-01T00:00:00Z")
    assert status["replicas"] == 3 and status["readyReplicas"] == 2 and status["desiredReplicas"] == 3
    assert status["selector"] == "tokenfleet.io/component=worker,tokenfleet.io/deployment=chat"
    assert (
        status["queueDepth"] == 4.0
        and status["kvCacheUtilization"] == 0.456
        and status["kvCachePercent"] == 46
    )
    assert status["tokensPerSecond"] == 800 and status["costPerMillionTokens"] == 2.778
    assert status["hourlyCost"] == 9.0 and status["observedGeneration"] == 7
    assert status["lastScaleTime"] == "2026-01-01T00:00:00Z" and status["lastScaleReason"].startswith(
        "scale up"
    )
    variants = {v["name"]: v for v in status["variants"]}
    assert variants["l4"] == {
        "name": "l4",
        "replicas": 1,
        "readyReplicas": 0,
        "desiredReplicas": 1,
        "unschedulable": 1,
    }
    c = conds(status)
    assert c["Ready"]["status"] == "True" and c["Progressing"]["status"] == "True"
    assert c["ScalingLimited"]["status"] == "False" and c["MetricsStale"]["status"] == "False"


def test_unchanged_fleet_produces_no_patch() -> None:
    d = decision({"h100": 2, "l4": 0}, {"h100": 2, "l4": 0})
    first = build_status("chat", SPEC, d, SNAP, 1, {}, "2026-01-01T00:00:00Z")
    again = build_status("chat", SPEC, d, SNAP, 1, first, "2026-01-01T00:05:00Z")
    assert status_changes(again, first) == {}
    assert again["lastScaleTime"] is None  # a hold is not a scale


def test_transition_time_moves_only_when_status_flips() -> None:
    held = decision({"h100": 2, "l4": 0}, {"h100": 2, "l4": 0})
    first = build_status("chat", SPEC, held, SNAP, 1, {}, "T1")
    limited = decision({"h100": 2, "l4": 0}, {"h100": 2, "l4": 0}, limits=(Limit(BUDGET_CAP, "budget $8/h"),))
    second = build_status("chat", SPEC, limited, SNAP, 1, first, "T2")
    c = conds(second)
    assert c["ScalingLimited"]["status"] == "True" and c["ScalingLimited"]["reason"] == "BudgetCap"
    assert c["ScalingLimited"]["lastTransitionTime"] == "T2"
    assert c["Ready"]["lastTransitionTime"] == "T1"
    assert set(status_changes(second, first)) == {"conditions"}


def test_stale_keeps_last_measurements_and_flags() -> None:
    before = build_status(
        "chat", SPEC, decision({"h100": 2, "l4": 0}, {"h100": 2, "l4": 0}), SNAP, 1, {}, "T1"
    )
    stale = decision({"h100": 2, "l4": 0}, {"h100": 2, "l4": 0}, is_metrics_stale=True)
    after = build_status("chat", SPEC, stale, FleetSnapshot(time=200, is_stale=True), 1, before, "T2")
    assert after["queueDepth"] == before["queueDepth"] and after["readyReplicas"] == 2
    assert conds(after)["MetricsStale"]["status"] == "True"


@pytest.mark.parametrize(
    ("total", "ready", "requested", "reason"),
    [(0, 0, 0, "ScaledToZero"), (2, 0, 2, "NoReadyWorkers"), (2, 2, 2, "WorkersReady")],
)
def test_ready_condition(total: int, ready: int, requested: int, reason: str) -> None:
    d = decision({"h100": total}, {"h100": total})
    (is_ready, progressing, _, _) = conditions_for(d, ready, requested)
    assert is_ready.reason == reason and is_ready.status == (reason != "NoReadyWorkers")
    assert progressing.status == (ready != requested)


def test_scaling_event() -> None:
    assert scaling_event(decision({"h100": 2}, {"h100": 2})) is None
    up = scaling_event(decision({"h100": 2, "l4": 1}, {"h100": 2, "l4": 0}))
    assert up is not None and up.type == "Normal" and up.reason == "ScaledUp"
    assert "queue 4.0/replica" in up.message and "l4 0->1" in up.message
    limited = decision({"h100": 1}, {"h100": 2}, limits=(Limit(BUDGET_CAP, "budget $4/h caps the fleet"),))
    down = scaling_event(limited)
    assert (
        down is not None
        and down.type == "Warning"
        and down.reason == "ScaledDown"
        and "budget" in down.message
    )
