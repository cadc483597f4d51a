"""The router's Prometheus metrics, in a registry of its own (one per app, so tests don't collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tokenfleet_common import metric_names as m

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _counter_name(name: str) -> str:
    # prometheus-client appends `_total` itself.
    return name.removesuffix("_total")


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            _counter_name(m.ROUTER_REQUESTS),
            "Requests answered by the router, by HTTP status and worker.",
            ["status", "worker"],
            registry=self.registry,
        )
        self.decisions = Counter(
            _counter_name(m.ROUTER_DECISIONS),
            "Workers picked, by routing strategy.",
            ["strategy"],
            registry=self.registry,
        )
        self.retries = Counter(
            _counter_name(m.ROUTER_RETRIES),
            "Requests retried on another worker after failing before their first byte.",
            registry=self.registry,
        )
        self.held = Gauge(
            m.ROUTER_HELD,
            "Requests waiting for a worker with capacity, or for a first worker.",
            registry=self.registry,
        )
        self.workers = Gauge(m.ROUTER_WORKERS, "Workers known to the router.", registry=self.registry)
        self.ttft = Histogram(
            m.ROUTER_TTFT,
            "Seconds from request arrival to the first byte sent back.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            m.ROUTER_LATENCY,
            "Seconds from request arrival to the end of the response.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
