"""What `tokenfleet bench operator` measures, and how: the operator's own /metrics, its RSS, when the
fleets are settled, and resourceVersions that show any write (reconcile latency: operator_reconcile.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s

from tokenfleet_common import metric_names as m
from tokenfleet_operator import GROUP, PLURAL, VERSION
from tokenfleet_operator.metrics_parsing import sample_values


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class OperatorScrape:
    requests: dict[str, float]  # by verb
    tick_buckets: tuple[tuple[float, float], ...]
    tick_count: float
    tick_sum: float
    # The reconcile handler itself (spec -> children written), without the event's way to and from it.
    children_buckets: tuple[tuple[float, float], ...] = ()


def scrape_operator(port: int) -> OperatorScrape:
    values = sample_values(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    requests = {labels["verb"]: v for labels, v in values.get("tokenfleet_operator_api_requests_total", [])}

    def ticks(suffix: str, kind: str = "tick") -> list[tuple[dict[str, str], float]]:
        return [
            (lab, v) for lab, v in values.get(m.OPERATOR_RECONCILE + suffix, []) if lab.get("kind") == kind
        ]

    buckets = tuple(sorted((float(lab["le"]), v) for lab, v in ticks("_bucket")))
    children = tuple(sorted((float(lab["le"]), v) for lab, v in ticks("_bucket", "children")))
    return OperatorScrape(
        requests, buckets, sum(v for _, v in ticks("_count")), sum(v for _, v in ticks("_sum")), children
    )


def rss_mb(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def wait_until(what: str, check: Callable[[], bool], timeout: float, period: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(period)


def metrics_answer(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def as_json(api: k8s.ApiClient, obj: object) -> dict[str, Any]:
    """A client model (or the custom objects API's plain answer) as the API's JSON."""
    return dict(api.sanitize_for_serialization(obj))


def fleets_in(api: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    custom = k8s.CustomObjectsApi(api)
    return list(
        as_json(api, custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))["items"]
    )


def resource_versions(api: k8s.ApiClient, namespaces: list[str]) -> dict[str, str]:
    """ResourceVersion of every fleet, and generation of every Deployment, in the bench's namespaces.

    A Deployment's generation moves only when its spec is written (by the operator); its
    resourceVersion also moves when the controller-manager catches up on its status, which on a busy
    cluster can happen long after the last write.
    """
    apps = k8s.AppsV1Api(api)
    found = {}
    for ns in namespaces:
        for item in fleets_in(api, ns):
            found[f"infdep/{ns}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        for dep in as_json(api, apps.list_namespaced_deployment(ns))["items"]:
            found[f"deployment/{ns}/{dep['metadata']['name']}"] = str(dep["metadata"]["generation"])
    return found


LAST_HANDLED = "tokenfleet.io/last-handled-configuration"  # kopf's diffbase, written once handled
IN_PROGRESS = "tokenfleet.io/reconcile_children"  # kopf's progress while the handler retries


def is_settled(fleet: dict[str, Any]) -> bool:
    """The operator handled the fleet's spec (children applied) and its status observed it."""
    meta = fleet["metadata"]
    annotations = meta.get("annotations") or {}
    observed = (fleet.get("status") or {}).get("observedGeneration") == meta["generation"]
    retrying = any(key.startswith(IN_PROGRESS) for key in annotations)
    return observed and LAST_HANDLED in annotations and not retrying


def fleets_settled(api: k8s.ApiClient, namespaces: list[str], expected: int) -> bool:
    items = [i for ns in namespaces for i in fleets_in(api, ns)]
    return sum(1 for i in items if is_settled(i)) == expected


def release_fleets(api: k8s.ApiClient, namespaces: list[str]) -> int:
    """Strip the finalizers of fleets left after the operator stopped, so their namespaces can go."""
    custom = k8s.CustomObjectsApi(api)
    left = [i for ns in namespaces for i in fleets_in(api, ns) if i["metadata"].get("finalizers")]
    for item in left:
        meta = item["metadata"]
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"metadata": {"finalizers": None}}
        )
    return len(left)
