"""Set the stage and strike it: the tiny model, the namespace, the two fleets, and the teardown.

Every wait is bounded and its error names what did not happen, with the relevant pod log tail.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenfleet_devkit.cluster import control_plane
from tokenfleet_devkit.cluster import versions as v
from tokenfleet_devkit.demo import pod_network
from tokenfleet_devkit.demo.install import InstallError, kubectl_json, pod_log_tail
from tokenfleet_devkit.demo.monitor import FleetMonitor
from tokenfleet_devkit.demo.workload import SIM_FLEET, TORCH_FLEET

Say = Callable[[str], None]


def model_dir() -> Path:
    return v.cache_dir() / "demo" / "tiny-llama"


def ensure_model(say: Say) -> Path:
    """The tiny random Llama checkpoint both fleets load (written once, then reused)."""
    path = model_dir()
    if (path / "config.json").exists() and (path / "tokenizer.json").exists():
        return path
    say(f"writing the tiny random Llama checkpoint to {path}")
    command = [sys.executable, "-m", "tokenfleet_worker.make_model", str(path), "--preset", "tiny"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise InstallError(f"make-model failed: {proc.stderr.strip()[-1000:]}")
    return path


def check_pod_network(paths: control_plane.Paths, own_cluster: bool, say: Say) -> None:
    """Refuse to start on a pod network that other processes already use (see pod_network.py).

    The demo's own, still empty cluster moves to a free part of the network instead.
    """
    shared = pod_network.clusters_sharing_pod_cidrs(paths)
    if shared and own_cluster and not _has_pod_ips(paths):
        network = pod_network.move_to_own_pod_network(paths, shared)
        say(f"cluster(s) {', '.join(shared)} use the same pod addresses; moved the GPU nodes to {network}")
        shared = pod_network.clusters_sharing_pod_cidrs(paths)
    if shared and own_cluster:
        name, cidrs = next(iter(shared.items()))
        raise InstallError(
            f"local cluster {name!r} is running with the same pod network ({', '.join(cidrs[:3])}, ...): "
            "pods of both clusters would bind the same loopback addresses. Stop it first, or run the "
            f"demo inside it: tokenfleet demo --reuse-cluster --cluster-name {name}"
        )
    found = pod_network.stray_listeners(paths)
    if found:
        raise InstallError(
            f"processes listen on pod addresses that no pod of cluster {paths.name!r} holds "
            f"({', '.join(found[:5])}): new pods given those addresses would not get their own traffic. "
            "They are usually left over by a crashed test or launcher: find them with `ss -ltnp`, "
            f"or restart the cluster ({paths.state})."
        )


def _has_pod_ips(paths: control_plane.Paths) -> bool:
    out = control_plane.kubectl(paths, "get", "pods", "-A", "-o", "jsonpath={.items[*].status.podIP}")
    return bool(out.stdout.split())


def namespace_exists(paths: control_plane.Paths, namespace: str) -> bool:
    return control_plane.kubectl(paths, "get", "namespace", namespace, check=False).returncode == 0


def delete_fleets(paths: control_plane.Paths, namespace: str, say: Say, timeout: float = 60.0) -> None:
    """Delete the InferenceDeployments while the operator still runs: it owns their finalizer."""
    if not namespace_exists(paths, namespace):
        return
    proc = control_plane.kubectl(
        paths, "delete", "infdep", "--all", "-n", namespace, f"--timeout={timeout:.0f}s", check=False
    )
    if proc.returncode != 0:
        say(f"warning: the fleets were not deleted within {timeout:.0f}s: {proc.stderr.strip()[-300:]}")


def delete_namespace(paths: control_plane.Paths, namespace: str, say: Say, timeout: float = 90.0) -> None:
    """Delete the namespace and whatever is left in it; bounded wait."""
    if not namespace_exists(paths, namespace):
        return
    control_plane.kubectl(paths, "delete", "namespace", namespace, "--wait=false", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not namespace_exists(paths, namespace):
            return
        time.sleep(1.0)
    say(f"warning: namespace {namespace} still terminating after {timeout:.0f}s")


def fresh_namespace(paths: control_plane.Paths, namespace: str, say: Say) -> None:
    if namespace_exists(paths, namespace):
        say(f"removing namespace {namespace} left over from an earlier run")
        delete_fleets(paths, namespace, say)
        delete_namespace(paths, namespace, say)
    control_plane.kubectl(paths, "create", "namespace", namespace)
    control_plane.kubectl(paths, "label", "namespace", namespace, "app.kubernetes.io/part-of=tokenfleet-demo")


def apply_fleets(paths: control_plane.Paths, docs: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(doc) for doc in docs)
    control_plane.kubectl(paths, "apply", "-f", "-", input=body)


def wait_until(what: str, check: Callable[[], Any], timeout: float, explain: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the API may blip; the deadline bounds the retries
            value = check()
            if value:
                return value
        time.sleep(1.0)
    raise InstallError(f"timed out after {timeout:.0f}s waiting for {what}\n{explain()}")


def wait_fleets_ready(
    paths: control_plane.Paths, namespace: str, monitor: FleetMonitor, say: Say, timeout: float
) -> dict[str, str]:
    """Both routers ready, the torch worker ready, the autoscaled fleet at zero; returns router addresses."""
    names = monitor.names

    def explain(component: str, fleet: str) -> Callable[[], str]:
        selector = f"tokenfleet.io/deployment={names.resource(fleet)},tokenfleet.io/component={component}"
        return lambda: pod_log_tail(paths, namespace, selector) + "\n" + _operator_hint(paths, namespace)

    routers = {}
    for fleet in (SIM_FLEET, TORCH_FLEET):
        routers[fleet] = wait_until(
            f"the {names.resource(fleet)} router pod to be Ready",
            lambda fleet=fleet: monitor.router_address(fleet),  # type: ignore[misc]
            timeout,
            explain("router", fleet),
        )
        say(f"router of {names.resource(fleet)} ready at http://{routers[fleet]}/v1")
    wait_until(
        f"the {names.torch} torch worker to load the model and turn Ready",
        lambda: monitor.sample(0.0)[TORCH_FLEET].total_ready >= 1,
        timeout,
        explain("worker", TORCH_FLEET),
    )
    say(f"{names.torch}: torch worker ready (real engine, tiny random Llama on the CPU)")
    wait_until(
        f"{names.sim} to settle at zero replicas",
        lambda: (s := monitor.sample(0.0)[SIM_FLEET]).total_desired == 0 and sum(s.pods.values()) == 0,
        timeout,
        lambda: _operator_hint(paths, namespace),
    )
    say(f"{names.sim}: scaled to zero, waiting for traffic")
    return routers


def _operator_hint(paths: control_plane.Paths, namespace: str) -> str:
    try:
        items = kubectl_json(paths, "get", "infdep", "-n", namespace)["items"]
    except (control_plane.ClusterError, ValueError):
        return ""
    lines = []
    for item in items:
        conditions = item.get("status", {}).get("conditions") or []
        text = "; ".join(f"{c['type']}={c['status']} ({c.get('message', '')})" for c in conditions)
        lines.append(f"{item['metadata']['name']}: {text or 'no status yet (is the operator running?)'}")
    return "\n".join(lines)
