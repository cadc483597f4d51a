"""The operator's own metrics, served on a real port and read back with the Prometheus parser."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tokenfleet_common import metric_names as m
from tokenfleet_operator.operator_metrics import OperatorMetrics


def test_metrics_are_served_with_the_shared_names() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = OperatorMetrics()
    metrics.decisions.labels("ns", "chat", "up").inc()
    metrics.errors.labels("metrics").inc(2)
    metrics.reconcile_seconds.labels("tick").observe(0.02)
    server = metrics.serve(port, host="127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert (
        samples[(m.OPERATOR_DECISIONS, (("direction", "up"), ("infdep", "chat"), ("namespace", "ns")))] == 1
    )
    assert samples[(m.OPERATOR_ERRORS, (("stage", "metrics"),))] == 2
    assert samples[(m.OPERATOR_RECONCILE + "_count", (("kind", "tick"),))] == 1
