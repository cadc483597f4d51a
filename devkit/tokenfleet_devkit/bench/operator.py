"""`tokenfleet bench operator`: the operator at scale, on a kwok cluster of its own.

The cluster `--cluster` (default `tokenfleet-bench`) is started without the pod launcher when it is not
running, so no pod runs as a process: this measures the operator, not the workers. The bench adds
`--nodes` fake H100 nodes and `--fleets` InferenceDeployments (sim backend, minReplicas 0: no worker
pods; each router pod is scheduled but never turns ready) spread over `--namespaces` namespaces of its
own, runs one operator process over those namespaces, and measures:

- reconcile latency: a fleet's spec change (engine.maxNumSeqs) acknowledged by the API server -> its
  worker Deployment carries the new value, as seen by a watch; one change per fleet at `--rate` changes
  per second (operator_reconcile.py); p50/p99;
- decision latency per fleet: the operator's own tick histogram (pods from its watch cache, scrape,
  decide, write what changed), and the pure `policy.decide` on a full-length history, timed here;
- API requests per minute while idle, by verb, from the operator's request counter (writes should be
  zero), checked independently by the resourceVersions of every fleet and child Deployment;
- operator RSS, now and at its peak.

Prints a table, writes results/operator.json, then deletes what it created (and stops the cluster if
it started it). `--smoke` runs a few fleets on a few nodes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from rich.console import Console

from tokenfleet_devkit.bench.operator_probes import (
    fleets_in,
    fleets_settled,
    free_port,
    metrics_answer,
    percentile,
    release_fleets,
    resource_versions,
    rss_mb,
    scrape_operator,
    wait_until,
)
from tokenfleet_devkit.bench.operator_reconcile import measure_reconcile
from tokenfleet_devkit.bench.operator_table import table
from tokenfleet_devkit.cluster import control_plane, topology
from tokenfleet_devkit.launcher import daemon
from tokenfleet_devkit.process_stop import stop_gracefully
from tokenfleet_operator import GROUP, PLURAL, VERSION, crd
from tokenfleet_operator.metrics_parsing import histogram_quantile
from tokenfleet_operator.policy import decide, history_seconds
from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

POOL = "bench-h100"
FIRST_NODE_INDEX = 64  # pod CIDRs after the cluster's own nodes
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    nodes: int
    fleets: int
    namespaces: int
    rate: float  # spec changes per second
    idle_seconds: float
    interval_seconds: int  # the fleets' metrics interval: one tick per fleet per interval
    cluster: str
    keep_cluster: bool


def fleet_manifest(name: str, interval_seconds: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "uri": "file:///models/none"},
            "engine": {"backend": "sim", "maxNumSeqs": 16},
            "accelerators": [
                {
                    "name": "h100",
                    "hourlyCost": 4.0,
                    "nodeSelector": {topology.GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"},
                }
            ],
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 8,
                "metrics": {"intervalSeconds": interval_seconds},
            },
            "routing": {"replicas": 1},
        },
    }


def decide_microseconds(interval_seconds: int, repeats: int = 200) -> float:
    """The pure policy on one busy fleet (4 replicas) as the operator calls it, in microseconds per call:
    each call sees a full-length history that gained one new snapshot since the previous call."""
    spec = parse_spec(fleet_manifest("f", interval_seconds)["spec"])
    count = int(history_seconds(spec) // interval_seconds)
    snapshots = [
        FleetSnapshot(
            time=float(i * interval_seconds),
            variants=(VariantSnapshot("h100", ready=4, waiting=3.0 + i % 5, running=40.0, kv_usage=0.6),),
        )
        for i in range(count + repeats)
    ]
    decide(spec, snapshots[:count], {"h100": 4}, snapshots[count - 1].time)  # the history so far
    started = time.perf_counter()
    for i in range(1, repeats + 1):
        decide(spec, snapshots[i : i + count], {"h100": 4}, snapshots[i + count - 1].time)
    return (time.perf_counter() - started) / repeats * 1e6


def fleets_gone(api: k8s.ApiClient, namespaces: list[str]) -> bool:
    return not any(fleets_in(api, ns) for ns in namespaces)


def add_nodes(paths: control_plane.Paths, nodes: list[dict[str, Any]], chunk: int = 100) -> None:
    """control_plane.add_nodes in concurrent chunks: one kubectl applies its nodes one request at a time."""
    chunks = [nodes[i : i + chunk] for i in range(0, len(nodes), chunk)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda part: control_plane.add_nodes(paths, list(part)), chunks))


def run(config: BenchConfig, paths: control_plane.Paths, say: Say, log_path: Path) -> dict[str, Any]:
    """Everything between a running cluster and the results; cleans up its namespaces and nodes."""
    control_plane.kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", "-", input=crd.render())
    control_plane.kubectl(
        paths, "wait", "--for=condition=Established", f"crd/{crd.CRD_NAME}", "--timeout=60s"
    )
    api = k8s_config.new_client_from_config(config_file=str(paths.kubeconfig))
    core = k8s.CoreV1Api(api)
    run_id = uuid.uuid4().hex[:6]
    namespaces = [f"bench-op-{run_id}-{i}" for i in range(config.namespaces)]
    fleets = [(namespaces[i % len(namespaces)], f"fleet-{i}") for i in range(config.fleets)]
    operator: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        pool = topology.NodePool(POOL, config.nodes, 8, "NVIDIA-H100-80GB-HBM3")
        add_nodes(paths, topology.gpu_nodes((pool,), start=FIRST_NODE_INDEX))
        say(f"added {config.nodes} nodes in {time.monotonic() - started:.1f}s")
        for ns in namespaces:
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        port = free_port()
        ns_args = [arg for ns in namespaces for arg in ("--namespace", ns)]
        command = [
            sys.executable,
            "-m",
            "tokenfleet_operator",
            "--standalone",
            *ns_args,
            "--kubeconfig",
            str(paths.kubeconfig),
        ]
        log = open(log_path, "wb")  # noqa: SIM115 - the operator's output; closed when it exits
        operator = subprocess.Popen(
            [*command, "--metrics-port", str(port), "--log-level", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until("the operator's /metrics", lambda: metrics_answer(port), timeout=120)
        custom = k8s.CustomObjectsApi(api)
        started = time.monotonic()
        for ns, name in fleets:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, fleet_manifest(name, config.interval_seconds)
            )
        settle_timeout = 120 + 3 * config.fleets  # a busy API server takes seconds per fleet
        wait_until(
            "every fleet reconciled",
            lambda: fleets_settled(api, namespaces, config.fleets),
            settle_timeout,
            2,
        )
        say(f"{config.fleets} fleets reconciled in {time.monotonic() - started:.1f}s")

        measured = measure_reconcile(
            api, paths.kubeconfig, fleets, config.rate, timeout=60 + config.fleets / config.rate
        )
        latencies = measured["acked"]
        say(f"reconcile latency measured on {len(latencies)} of {len(fleets)} changes")
        wait_until(
            "the changes to settle", lambda: fleets_settled(api, namespaces, config.fleets), settle_timeout, 2
        )
        time.sleep(
            2 * config.interval_seconds
        )  # the status of every fleet catches up with its new generation

        say(f"idle for {config.idle_seconds:.0f}s")
        before, versions = scrape_operator(port), resource_versions(api, namespaces)
        time.sleep(config.idle_seconds)
        after, versions_after = scrape_operator(port), resource_versions(api, namespaces)
        per_minute = {
            verb: (after.requests.get(verb, 0.0) - before.requests.get(verb, 0.0)) * 60 / config.idle_seconds
            for verb in sorted(set(after.requests) | set(before.requests))
        }
        changed = sorted(k for k, v in versions_after.items() if versions.get(k) != v)
        micros = decide_microseconds(config.interval_seconds)
        return {
            "config": asdict(config),
            "reconcile_latency_s": {
                "changes": len(fleets),
                "measured": len(latencies),
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "max": max(latencies, default=None),
                # From the client sending the change: adds the API server's own time to accept it.
                "from_send_p50": percentile(measured["sent"], 50),
                "from_send_p99": percentile(measured["sent"], 99),
                # The operator's reconcile handler alone (its histogram, since it started).
                "handler_p50": histogram_quantile(0.5, after.children_buckets),
                "handler_p99": histogram_quantile(0.99, after.children_buckets),
            },
            "tick_s": {
                "count": after.tick_count,
                "mean": after.tick_sum / after.tick_count if after.tick_count else None,
                "p50": histogram_quantile(0.5, after.tick_buckets),
                "p99": histogram_quantile(0.99, after.tick_buckets),
            },
            "decide_us_per_fleet": micros,
            "idle": {
                "seconds": config.idle_seconds,
                "requests_per_minute": per_minute,
                "writes_per_minute": sum(per_minute.get(v, 0.0) for v in WRITE_VERBS),
                "objects_changed": changed,
            },
            "operator_rss_mb": rss_mb(operator.pid),
        }
    finally:
        # Fleets go first, while the operator still runs to release their finalizers (the namespace
        # controller alone can take minutes to get to them on a busy cluster).
        for ns in namespaces:
            k8s.CustomObjectsApi(api).delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
            control_plane.kubectl(
                paths, "delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False
            )
        if operator is not None:
            try:
                wait_until("the fleets to go", lambda: fleets_gone(api, namespaces), 30, 1)
            except TimeoutError:
                say("some fleets outlived the operator; releasing their finalizers")
            stop_gracefully(operator, grace_s=30)
        release_fleets(api, namespaces)
        core.delete_collection_node(label_selector=f"tokenfleet.io/pool={POOL}")  # one request, not N
        api.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenfleet bench operator", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="kwok GPU nodes to add")
    parser.add_argument("--fleets", type=int, default=100, help="InferenceDeployments to create")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces the fleets are spread over")
    parser.add_argument("--rate", type=float, default=10.0, help="spec changes per second")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=int, default=5, help="the fleets' metrics interval, seconds")
    parser.add_argument("--cluster", default="tokenfleet-bench", help="kwok cluster name (started if needed)")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started")
    parser.add_argument("--smoke", action="store_true", help="a few fleets on a few nodes, in seconds")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.nodes, args.fleets, args.namespaces, args.idle_seconds, args.interval = 10, 4, 1, 6.0, 2
    config = BenchConfig(
        args.nodes,
        args.fleets,
        args.namespaces,
        args.rate,
        args.idle_seconds,
        args.interval,
        args.cluster,
        args.keep_cluster,
    )
    console = Console()
    say: Say = lambda line: console.print(f"[dim]{line}[/dim]")  # noqa: E731
    paths = control_plane.Paths.default(config.cluster)
    was_running = control_plane.is_running(paths)
    if was_running and daemon.is_running(paths.state):
        console.print(f"error: cluster {config.cluster!r} runs the pod launcher; pick a cluster without it")
        return 2
    control_plane.up(say=say, paths=paths, launcher=False)
    args.results.mkdir(parents=True, exist_ok=True)
    try:
        results = run(config, paths, say, args.results / "operator-bench.log")
    finally:
        if not was_running and not config.keep_cluster:
            control_plane.down(say=say, paths=paths)
    console.print(table(results))
    (args.results / "operator.json").write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.results / 'operator.json'}")
    return 0
