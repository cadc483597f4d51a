"""Fleet state as Prometheus gauges, for the dashboards and alert rules.

Each tick the operator republishes one fleet's status: replicas per variant, limits, cost, targets
and conditions, labelled `namespace` and `infdep` (Prometheus scrapes the operator with
`honor_labels`, so these labels name the fleet rather than the operator pod).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from tokenfleet_common import metric_names as m
from tokenfleet_operator.resource import InferenceDeploymentSpec

FLEET = ["namespace", "infdep"]


class FleetGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, text, [*FLEET, *extra], registry=registry)

        self.desired = gauge(m.OPERATOR_DESIRED_REPLICAS, "Replicas the autoscaler wants.", ("variant",))
        self.ready = gauge(m.OPERATOR_READY_REPLICAS, "Ready worker replicas.", ("variant",))
        self.max_replicas = gauge(m.OPERATOR_MAX_REPLICAS, "spec.autoscaling.maxReplicas.")
        self.hourly_cost = gauge(m.OPERATOR_HOURLY_COST, "Hourly cost of the requested replicas.")
        self.hourly_budget = gauge(m.OPERATOR_HOURLY_BUDGET, "Hourly budget cap, when set.")
        self.ttft_target = gauge(m.OPERATOR_TTFT_TARGET, "TTFT p95 target, when set.")
        self.condition = gauge(m.OPERATOR_CONDITION, "1 when the condition is True.", ("type", "reason"))
        self._conditions: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def publish(
        self, namespace: str, name: str, spec: InferenceDeploymentSpec, status: Mapping[str, Any]
    ) -> None:
        fleet = (namespace, name)
        for variant in status.get("variants") or []:
            self.desired.labels(*fleet, variant["name"]).set(variant.get("desiredReplicas", 0))
            self.ready.labels(*fleet, variant["name"]).set(variant.get("readyReplicas", 0))
        auto = spec.autoscaling
        self.max_replicas.labels(*fleet).set(auto.max_replicas)
        self.hourly_cost.labels(*fleet).set(float(status.get("hourlyCost") or 0.0))
        if auto.max_hourly_cost is not None:
            self.hourly_budget.labels(*fleet).set(auto.max_hourly_cost)
        if auto.targets.ttft_p95_seconds is not None:
            self.ttft_target.labels(*fleet).set(auto.targets.ttft_p95_seconds)
        self._publish_conditions(fleet, status.get("conditions") or [])

    def _publish_conditions(self, fleet: tuple[str, str], conditions: list[Mapping[str, Any]]) -> None:
        # A condition's reason changes over time: drop the old series so only the current one reads 1.
        current = {(c["type"], c.get("reason") or "") for c in conditions}
        for kind, reason in self._conditions.get(fleet, set()) - current:
            self.condition.remove(*fleet, kind, reason)
        for c in conditions:
            self.condition.labels(*fleet, c["type"], c.get("reason") or "").set(
                1 if c["status"] == "True" else 0
            )
        self._conditions[fleet] = current

    def forget(self, namespace: str, name: str) -> None:
        """A deleted fleet leaves no stale series behind."""
        for gauge in (
            self.desired,
            self.ready,
            self.max_replicas,
            self.hourly_cost,
            self.hourly_budget,
            self.ttft_target,
            self.condition,
        ):
            for labels in list(gauge._metrics):  # prometheus-client offers no public label listing
                if labels[:2] == (namespace, name):
                    gauge.remove(*labels)
        self._conditions.pop((namespace, name), None)
