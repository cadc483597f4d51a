"""The operator benchmark's pure parts and probes; the whole run is `tokenfleet bench operator --smoke`."""

from __future__ import annotations

import os
from typing import Any

import pytest
from rich.console import Console

from tokenfleet_devkit.bench.operator import decide_microseconds, fleet_manifest, table
from tokenfleet_devkit.bench.operator_probes import free_port, is_settled, percentile, rss_mb, scrape_operator
from tokenfleet_devkit.bench.operator_reconcile import max_num_seqs
from tokenfleet_operator import children
from tokenfleet_operator.child_meta import Owner
from tokenfleet_operator.operator_metrics import OperatorMetrics
from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.settings import OperatorSettings


@pytest.mark.unit
def test_bench_fleets_run_no_workers_and_parse() -> None:
    spec = parse_spec(fleet_manifest("fleet-0", 5)["spec"])
    assert spec.autoscaling.min_replicas == 0 and spec.engine.backend == "sim"
    assert spec.autoscaling.metrics.interval_seconds == 5


@pytest.mark.unit
@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, None), ([3.0], 99, 3.0), ([4.0, 1.0, 3.0, 2.0, 5.0], 50, 3.0), (list(range(101)), 99, 99)],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.unit
def test_a_fleet_is_settled_once_handled_without_retries_and_observed() -> None:
    def fleet(annotations: dict[str, str], observed: int) -> dict[str, Any]:
        meta = {"generation": 3, "annotations": annotations}
        return {"metadata": meta, "status": {"observedGeneration": observed}}

    handled = {"tokenfleet.io/last-handled-configuration": "{}"}
    assert is_settled(fleet(handled, 3))
    assert not is_settled(fleet(handled, 2))  # the status has not caught up
    assert not is_settled(fleet({}, 3))  # children not applied yet
    retrying = {**handled, "tokenfleet.io/reconcile_children": '{"retries": 2}'}
    assert not is_settled(fleet(retrying, 3))


@pytest.mark.unit
def test_the_watch_reads_max_num_seqs_from_the_worker_args() -> None:
    spec = parse_spec(fleet_manifest("fleet-0", 5)["spec"])
    owner = Owner("fleet-0", "ns", "uid")
    deployment = children.worker_deployment(owner, spec, spec.accelerators[0], 0, OperatorSettings())
    assert max_num_seqs(deployment) == "16"
    assert max_num_seqs({"spec": {}}) is None


@pytest.mark.unit
def test_decide_is_timed_on_a_moving_history() -> None:
    assert 0 < decide_microseconds(5, repeats=5) < 1_000_000


def test_operator_metrics_are_scraped_by_verb_and_tick() -> None:
    metrics = OperatorMetrics()
    port = free_port()
    server = metrics.serve(port, host="127.0.0.1")
    try:
        metrics.api_requests.labels("GET").inc(7)
        metrics.api_requests.labels("PATCH").inc(2)
        for seconds in (0.02, 0.2, 0.3):
            metrics.reconcile_seconds.labels("tick").observe(seconds)
        metrics.reconcile_seconds.labels("children").observe(9.0)  # not a tick
        scrape = scrape_operator(port)
    finally:
        server.shutdown()
    assert scrape.requests == {"GET": 7.0, "PATCH": 2.0}
    assert scrape.tick_count == 3 and scrape.tick_sum == pytest.approx(0.52)
    assert scrape.tick_buckets[-1] == (float("inf"), 3.0)
    assert scrape.children_buckets[-1] == (float("inf"), 1.0)  # the reconcile handler, apart


def test_rss_of_this_process() -> None:
    rss = rss_mb(os.getpid())
    assert 1 < rss["VmRSS"] <= rss["VmHWM"]


@pytest.mark.unit
def test_table_names_every_target() -> None:
    results = {
        "config": {"fleets": 100, "nodes": 1000},
        "reconcile_latency_s": {
            "changes": 100,
            "measured": 100,
            "p50": 0.4,
            "p99": 1.5,
            "max": 1.7,
            "from_send_p50": 0.5,
            "from_send_p99": 1.75,
        },
        "tick_s": {"count": 10.0, "mean": 0.05, "p50": 0.04, "p99": 0.2},
        "decide_us_per_fleet": 800.0,
        "idle": {
            "seconds": 60.0,
            "requests_per_minute": {"GET": 2400.0},
            "writes_per_minute": 0.0,
            "objects_changed": [],
        },
        "operator_rss_mb": {"VmRSS": 120.0, "VmHWM": 130.0},
    }
    console = Console(width=200, record=True)
    console.print(table(results))
    text = console.export_text()
    assert (
        "1.500 s" in text and "1.750 s" in text and "< 2 s" in text and "< 250 MB" in text and "2400" in text
    )
