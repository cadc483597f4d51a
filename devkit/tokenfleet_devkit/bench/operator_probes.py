"""What `tokenfleet bench operator` measures, and how: the operator's own /metrics, its RSS, a watch that
times spec changes until they reach the worker Deployments, and resourceVersions that show any write."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from tokenfleet_common import metric_names as m
from tokenfleet_operator import GROUP, PLURAL, VERSION
from tokenfleet_operator.metrics_parsing import sample_values

WORKERS = "tokenfleet.io/component=worker"


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


def scrape_operator(port: int) -> OperatorScrape:
    values = sample_values(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    requests = {labels["verb"]: v for labels, v in values.get("tokenfleet_operator_api_requests_total", [])}

    def ticks(suffix: str) -> list[tuple[dict[str, str], float]]:
        return [
            (lab, v) for lab, v in values.get(m.OPERATOR_RECONCILE + suffix, []) if lab.get("kind") == "tick"
        ]

    buckets = tuple(sorted((float(lab["le"]), v) for lab, v in ticks("_bucket")))
    return OperatorScrape(
        requests, buckets, sum(v for _, v in ticks("_count")), sum(v for _, v in ticks("_sum"))
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


class ReconcileWatch:
    """Watches worker Deployments and records when each shows the maxNumSeqs it is waiting for."""

    def __init__(self, api: k8s.ApiClient, namespaces: set[str]) -> None:
        self._api = api
        self._apps = k8s.AppsV1Api(api)
        self._namespaces = namespaces
        self._expected: dict[str, tuple[str, float]] = {}  # ns/name -> (value, patched at)
        self.latencies: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        rv = as_json(api, self._apps.list_deployment_for_all_namespaces(label_selector=WORKERS))["metadata"][
            "resourceVersion"
        ]
        self._thread = threading.Thread(target=self._run, args=(rv,), daemon=True)
        self._thread.start()

    def expect(self, key: str, value: int, since: float) -> None:
        with self._lock:
            self._expected[key] = (str(value), since)

    def _run(self, rv: str) -> None:
        while not self._stop.is_set():
            stream = k8s_watch.Watch().stream(
                self._apps.list_deployment_for_all_namespaces,
                label_selector=WORKERS,
                resource_version=rv,
                timeout_seconds=2,
            )
            for event in stream:
                obj = as_json(self._api, event["object"])
                meta = obj["metadata"]
                rv = meta["resourceVersion"]
                if meta["namespace"] not in self._namespaces:
                    continue
                args = obj["spec"]["template"]["spec"]["containers"][0].get("args") or []
                value = args[args.index("--max-num-seqs") + 1] if "--max-num-seqs" in args else None
                key = f"{meta['namespace']}/{meta['labels'].get('tokenfleet.io/deployment')}"
                with self._lock:
                    wanted = self._expected.get(key)
                    if wanted and wanted[0] == value and key not in self.latencies:
                        self.latencies[key] = time.monotonic() - wanted[1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def measure_reconcile(
    api: k8s.ApiClient, fleets: list[tuple[str, str]], rate: float, timeout: float
) -> list[float]:
    custom = k8s.CustomObjectsApi(api)
    watch = ReconcileWatch(api, {ns for ns, _ in fleets})
    try:
        for ns, name in fleets:
            started = time.monotonic()
            watch.expect(f"{ns}/{name}", 17, started)
            patch = {"spec": {"engine": {"maxNumSeqs": 17}}}
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)
            time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
        wait_until(
            "every change to reach its Deployment", lambda: len(watch.latencies) == len(fleets), timeout, 0.2
        )
    except TimeoutError:
        pass  # the missing ones are reported
    finally:
        watch.stop()
    return list(watch.latencies.values())


def as_json(api: k8s.ApiClient, obj: object) -> dict[str, Any]:
    """A client model (or the custom objects API's plain answer) as the API's JSON."""
    return dict(api.sanitize_for_serialization(obj))


def fleets_in(api: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    custom = k8s.CustomObjectsApi(api)
    return list(
        as_json(api, custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))["items"]
    )


def resource_versions(api: k8s.ApiClient, namespaces: list[str]) -> dict[str, str]:
    """ResourceVersion of every fleet and Deployment in the bench's namespaces."""
    apps = k8s.AppsV1Api(api)
    found = {}
    for ns in namespaces:
        for item in fleets_in(api, ns):
            found[f"infdep/{ns}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        for dep in as_json(api, apps.list_namespaced_deployment(ns))["items"]:
            found[f"deployment/{ns}/{dep['metadata']['name']}"] = dep["metadata"]["resourceVersion"]
    return found


def fleets_settled(api: k8s.ApiClient, namespaces: list[str], expected: int) -> bool:
    items = [i for ns in namespaces for i in fleets_in(api, ns)]
    observed = [
        i for i in items if (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"]
    ]
    return len(observed) == expected
