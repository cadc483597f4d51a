"""The operator's own Prometheus metrics: scaling decisions, reconcile durations and errors."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tokenfleet_common import metric_names as m
from tokenfleet_operator.fleet_gauges import FleetGauges


def _without_total(name: str) -> str:
    # prometheus-client appends `_total` to counters itself.
    return name.removesuffix("_total")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter(
            _without_total(m.OPERATOR_DECISIONS),
            "Scaling decisions per fleet by direction (up, down, hold, rebalance).",
            ["namespace", "infdep", "direction"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            m.OPERATOR_RECONCILE,
            "Time to reconcile a fleet: children (spec changes) or tick (metrics, decision, status).",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )
        self.errors = Counter(
            _without_total(m.OPERATOR_ERRORS),
            "Errors by stage (metrics, apply, status, event, spec).",
            ["stage"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "tokenfleet_operator_api_requests",
            "Kubernetes API requests by verb (besides kopf's watches); writes should be zero when idle.",
            ["verb"],
            registry=self.registry,
        )
        self.fleet = FleetGauges(self.registry)
        self.fleets = Gauge(
            "tokenfleet_operator_fleets",
            "InferenceDeployments this operator is sizing.",
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> WSGIServer:
        """Serve /metrics from a background thread; shut the returned server down to stop."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server
