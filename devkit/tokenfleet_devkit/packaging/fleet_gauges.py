"""Fleet-state gauges the dashboards and alerts need from the operator.

The names live in `tokenfleet_common.metric_names`; the operator exports each with labels
`namespace`, `infdep` (InferenceDeployment name) and, where it says so, `variant`. Prometheus
scrapes the operator with `honor_labels: true` so these labels name the fleet, not the operator pod.
"""

from __future__ import annotations

from tokenfleet_common import metric_names as m

# Replicas per variant: what the autoscaler wants and what is ready (labels: namespace, infdep, variant).
DESIRED_REPLICAS = m.OPERATOR_DESIRED_REPLICAS
READY_REPLICAS = m.OPERATOR_READY_REPLICAS
# The fleet-wide cap `spec.autoscaling.maxReplicas` (labels: namespace, infdep).
MAX_REPLICAS = m.OPERATOR_MAX_REPLICAS
# Hourly cost of requested replicas, and the budget cap when one is set (labels: namespace, infdep).
HOURLY_COST = m.OPERATOR_HOURLY_COST
HOURLY_BUDGET = m.OPERATOR_HOURLY_BUDGET
# The TTFT p95 target when one is set (labels: namespace, infdep).
TTFT_TARGET = m.OPERATOR_TTFT_TARGET
# 1 when a condition is True, else 0, for every condition type (labels: namespace, infdep, type, reason).
CONDITION = m.OPERATOR_CONDITION

ALL = (DESIRED_REPLICAS, READY_REPLICAS, MAX_REPLICAS, HOURLY_COST, HOURLY_BUDGET, TTFT_TARGET, CONDITION)
