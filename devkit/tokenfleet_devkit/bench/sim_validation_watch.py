"""Watching the real fleet of a validation run: its worker pods, its resource's status, its operator.

Blocking calls with short timeouts; the replay runs them in a worker thread about once a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tokenfleet_common import metric_names
from tokenfleet_devkit.sim.pod_lifecycle import Order, PodLife
from tokenfleet_devkit.sim.validation_setup import FLEET_NAME

WORKER_SELECTOR = f"tokenfleet.io/deployment={FLEET_NAME},tokenfleet.io/component=worker"
ROUTER_SELECTOR = f"tokenfleet.io/deployment={FLEET_NAME},tokenfleet.io/component=router"
ROUTER_PORT = 8080
GROUP, VERSION, PLURAL = "tokenfleet.io", "v1alpha1", "inferencedeployments"
API_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Sample:
    """One second's look at the fleet: pods counted live, the rest from the resource's status."""

    t_s: float
    ready: int  # Ready and not being deleted
    pods: int  # existing (starting, serving or draining)
    desired: int | None
    queue_depth: float | None


@dataclass(frozen=True)
class OperatorTicks:
    count: float
    seconds: float  # summed duration of the ticks themselves
    span_s: float = 0.0  # wall time the count was taken over

    def since(self, earlier: OperatorTicks, span_s: float) -> OperatorTicks:
        return OperatorTicks(self.count - earlier.count, self.seconds - earlier.seconds, span_s)


def read_operator_ticks(metrics_port: int) -> OperatorTicks:
    """Ticks done so far and their summed duration, from the operator's own /metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=API_TIMEOUT_S).text
    count = seconds = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("kind") != "tick":
                continue
            if sample.name == metric_names.OPERATOR_RECONCILE + "_count":
                count += sample.value
            elif sample.name == metric_names.OPERATOR_RECONCILE + "_sum":
                seconds += sample.value
    return OperatorTicks(count, seconds)


def _is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class PodWatcher:
    """Lists the fleet's worker pods and reads its resource's status: the fleet once a second."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self._api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self._api)
        self.custom = client.CustomObjectsApi(self._api)
        self.namespace = namespace

    def close(self) -> None:
        self._api.close()

    def count(self) -> tuple[int, int]:
        """(ready and not deleting, existing) worker pods."""
        items: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=WORKER_SELECTOR, _request_timeout=API_TIMEOUT_S
        ).items
        ready = sum(1 for pod in items if _is_ready(pod) and pod.metadata.deletion_timestamp is None)
        return ready, len(items)

    def sample(self, t_s: float) -> Sample:
        ready, pods = self.count()
        body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, FLEET_NAME, _request_timeout=API_TIMEOUT_S
        )
        status = dict(body.get("status") or {}) if isinstance(body, dict) else {}
        desired, queue = status.get("desiredReplicas"), status.get("queueDepth")
        return Sample(
            t_s,
            ready,
            pods,
            None if desired is None else int(desired),
            None if queue is None else float(queue),
        )

    def router_address(self) -> str | None:
        items: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=ROUTER_SELECTOR, _request_timeout=API_TIMEOUT_S
        ).items
        for pod in items:
            if pod.status.pod_ip and _is_ready(pod) and pod.metadata.deletion_timestamp is None:
                return f"{pod.status.pod_ip}:{ROUTER_PORT}"
        return None


WATCH_TIMEOUT_S = 5  # the server ends each watch this often; the thread resumes it or stops


class EventRecorder:
    """Follows the fleet's worker pods and worker Deployments by watch, in two threads, stamping every
    change on `time.monotonic()`: the pods' add, Ready and deletion, and each new `spec.replicas`."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self._api = config.new_client_from_config(config_file=str(kubeconfig))
        self.namespace = namespace
        self.pods: dict[str, PodLife] = {}  # times: raw monotonic clock
        self.orders: list[Order] = []
        self.errors = 0
        self._stop = threading.Event()
        core, apps = client.CoreV1Api(self._api), client.AppsV1Api(self._api)
        self._threads = [
            threading.Thread(target=self._follow, args=(core.list_namespaced_pod, self._on_pod), daemon=True),
            threading.Thread(
                target=self._follow, args=(apps.list_namespaced_deployment, self._on_deployment), daemon=True
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ends both watches (within one watch timeout); a second call does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(WATCH_TIMEOUT_S + API_TIMEOUT_S)
        self._api.close()

    def since(self, origin: float) -> tuple[dict[str, PodLife], list[Order]]:
        """What was recorded, on a clock that starts at `origin` (a `time.monotonic()` reading)."""

        def shift(t: float | None) -> float | None:
            return None if t is None else t - origin

        pods = {
            name: PodLife(p.added_s - origin, shift(p.ready_s), shift(p.gone_s))
            for name, p in self.pods.items()
        }
        return pods, [Order(o.at_s - origin, o.replicas) for o in self.orders]

    def _follow(self, list_fn: Callable[..., Any], on_object: Callable[[Any, float], None]) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    list_fn,
                    self.namespace,
                    label_selector=WORKER_SELECTOR,
                    resource_version=version,
                    timeout_seconds=WATCH_TIMEOUT_S,
                    _request_timeout=WATCH_TIMEOUT_S + API_TIMEOUT_S,
                ):
                    obj = event["object"]
                    on_object(obj, time.monotonic())
                    version = obj.metadata.resource_version
                    if self._stop.is_set():
                        return
            except ApiException as err:
                self.errors += 1
                if err.status == 410:  # too old to resume: start over from the current state
                    version = None
            except Exception:  # an API blip: resume where the watch was
                self.errors += 1
                time.sleep(0.1)

    def _on_pod(self, pod: Any, now: float) -> None:
        life = self.pods.setdefault(pod.metadata.name, PodLife(now))
        if life.ready_s is None and _is_ready(pod):
            life.ready_s = now
        if life.gone_s is None and pod.metadata.deletion_timestamp is not None:
            life.gone_s = now

    def _on_deployment(self, deployment: Any, now: float) -> None:
        replicas = int(deployment.spec.replicas or 0)
        if not self.orders or self.orders[-1].replicas != replicas:
            self.orders.append(Order(now, replicas))
