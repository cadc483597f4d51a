from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tokenfleet_operator.fleet_gauges import FleetGauges
from tokenfleet_operator.resource import parse_spec

pytestmark = pytest.mark.unit

SPEC = {
    "model": {"name": "chat", "uri": "file:///m"},
    "accelerators": [{"name": "h100", "hourlyCost": 4.0}],
    "autoscaling": {"maxReplicas": 8, "budget": {"maxHourlyCost": 20}, "targets": {"ttftP95Seconds": 1.5}},
}


def status(reason: str) -> dict[str, object]:
    return {
        "variants": [{"name": "h100", "desiredReplicas": 3, "readyReplicas": 2}],
        "hourlyCost": 12.0,
        "conditions": [{"type": "ScalingLimited", "status": "True", "reason": reason}],
    }


def test_publishes_fleet_state_and_replaces_condition_reasons() -> None:
    registry = CollectorRegistry()
    gauges = FleetGauges(registry)
    spec = parse_spec(SPEC)
    gauges.publish("ns", "chat", spec, status("AtMaxReplicas"))
    fleet = {"namespace": "ns", "infdep": "chat"}
    get = registry.get_sample_value
    assert get("tokenfleet_operator_desired_replicas", {**fleet, "variant": "h100"}) == 3
    assert get("tokenfleet_operator_ready_replicas", {**fleet, "variant": "h100"}) == 2
    assert get("tokenfleet_operator_max_replicas", fleet) == 8
    assert get("tokenfleet_operator_hourly_budget_dollars", fleet) == 20
    assert get("tokenfleet_operator_ttft_target_seconds", fleet) == 1.5
    gauges.publish("ns", "chat", spec, status("BudgetCap"))
    cond = {**fleet, "type": "ScalingLimited"}
    assert get("tokenfleet_operator_condition", {**cond, "reason": "AtMaxReplicas"}) is None
    assert get("tokenfleet_operator_condition", {**cond, "reason": "BudgetCap"}) == 1
    gauges.forget("ns", "chat")
    assert get("tokenfleet_operator_hourly_cost_dollars", fleet) is None
