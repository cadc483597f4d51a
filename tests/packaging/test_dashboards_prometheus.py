"""The big one: a real Prometheus scrapes a running fleet (operator installed by the chart, sim-backend
workers and a router run as real processes) under load, and every dashboard query — panels,
template variables and annotations, with Grafana's variables substituted — returns data from
Prometheus' HTTP API. A query that returns nothing fails the test, named with its panel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Cluster
from tests.packaging.chart_tools import CHART, set_flags
from tests.packaging.fleet_tools import (
    apply,
    free_port,
    inference_deployment,
    make_model,
    ready_pods,
)
from tests.packaging.prometheus_tools import TargetWriter, drive_load, empty_queries, running_prometheus
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_dashboard_query_returns_data_from_a_fleet_under_load(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    model = make_model(tmp_path / "model")
    started = time.time()
    with cluster.namespace("dash") as ns:
        flags = set_flags({"watchNamespaces": f"{{{ns}}}", "operator.metricsPort": str(free_port())})
        cluster.helm("install", "tf", str(CHART), "-n", ns, *flags, "--wait", "--timeout", "120s")
        apply(
            cluster,
            inference_deployment(ns, "chat", model, scaleUp={"stabilizationSeconds": 0, "maxStep": 2}),
        )
        wait_for(
            "a worker Ready", lambda: ready_pods(cluster, ns, "tokenfleet.io/component=worker"), timeout=120
        )
        (router, *_) = wait_for(
            "the router Ready", lambda: ready_pods(cluster, ns, "tokenfleet.io/component=router")
        )
        router_url = f"http://{router['status']['podIP']}:8080"
        with (
            TargetWriter(cluster, ns, tmp_path / "sd"),
            running_prometheus(tmp_path, tmp_path / "sd") as prom,
        ):
            wait_for(
                "Prometheus to scrape workers, router and operator",
                lambda: (
                    {t["labels"]["job"] for t in prom.active_targets() if t["health"] == "up"}
                    >= {"tokenfleet-workers", "tokenfleet-routers", "tokenfleet-operator"}
                ),
                timeout=60,
            )
            outcomes = drive_load(router_url, "chat")
            assert outcomes.get("ok", 0) >= 20, outcomes
            time.sleep(3)  # a last scrape after the load
            variables = {
                "namespace": ns,
                "deployment": "chat",
                "pod": ".*",
                "datasource": "prometheus",
                "__rate_interval": "1m",
            }
            failures = empty_queries(prom, variables, started)
        cluster.kubectl("delete", "infdep", "chat", "-n", ns, "--wait=true", "--timeout=60s", check=False)
        cluster.helm("uninstall", "tf", "-n", ns, "--wait", check=False)
    # The operator's fleet gauges included: every panel must have data, with no exceptions.
    assert not failures, f"{len(failures)} dashboard queries returned no data:\n" + "\n".join(failures)
