"""Read the fleets' state from the API server: the InferenceDeployments' status, worker and router
pods, and the operator's scaling Events. Blocking calls with short timeouts; the demo runs them in a
worker thread once a second."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tokenfleet_devkit.demo.accounting import FleetSample
from tokenfleet_devkit.demo.fleet_spec import FleetNames
from tokenfleet_devkit.demo.workload import SIM_FLEET, TORCH_FLEET

GROUP, VERSION, PLURAL = "tokenfleet.io", "v1alpha1", "inferencedeployments"
LABEL_DEPLOYMENT = "tokenfleet.io/deployment"
LABEL_VARIANT = "tokenfleet.io/variant"
LABEL_COMPONENT = "tokenfleet.io/component"
ROUTER_PORT = 8080
TIMEOUT_S = 5.0


def _is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class FleetMonitor:
    def __init__(self, kubeconfig: Path, namespace: str, names: FleetNames) -> None:
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.names = names
        self._api_client = api_client

    def close(self) -> None:
        self._api_client.close()

    def _status(self, name: str) -> dict[str, Any]:
        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=TIMEOUT_S
            )
        except ApiException as err:
            if err.status == 404:
                return {}
            raise
        status = obj.get("status") if isinstance(obj, dict) else None
        return dict(status or {})

    def sample(self, t_s: float) -> dict[str, FleetSample]:
        """One sample per fleet: desired replicas from the status, ready and existing pods counted live."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{LABEL_COMPONENT}=worker", _request_timeout=TIMEOUT_S
        ).items
        samples = {}
        for fleet in (SIM_FLEET, TORCH_FLEET):
            name = self.names.resource(fleet)
            status = self._status(name)
            variants = status.get("variants") or []
            desired = {v["name"]: int(v.get("desiredReplicas", 0)) for v in variants}
            ready: Counter[str] = Counter({v: 0 for v in desired})
            existing: Counter[str] = Counter({v: 0 for v in desired})
            for pod in pods:
                if pod.metadata is None:
                    continue
                labels = pod.metadata.labels or {}
                if labels.get(LABEL_DEPLOYMENT) != name:
                    continue
                variant = labels.get(LABEL_VARIANT, "?")
                existing[variant] += 1
                if _is_ready(pod) and pod.metadata.deletion_timestamp is None:
                    ready[variant] += 1
            samples[fleet] = FleetSample(
                t_s=t_s,
                fleet=fleet,
                desired=desired,
                ready=dict(ready),
                pods=dict(existing),
                queue_depth=_float(status.get("queueDepth")),
                kv_usage=_float(status.get("kvCacheUtilization")),
                tokens_per_second=_float(status.get("tokensPerSecond")),
                cost_per_mtok=_float(status.get("costPerMillionTokens")),
                last_reason=status.get("lastScaleReason"),
            )
        return samples

    def router_address(self, fleet: str) -> str | None:
        """host:port of a ready router pod of the fleet, reachable from this host (pod IPs are loopback)."""
        selector = f"{LABEL_DEPLOYMENT}={self.names.resource(fleet)},{LABEL_COMPONENT}=router"
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _request_timeout=TIMEOUT_S
        ).items
        for pod in pods:
            if pod.status is None or pod.metadata is None or not pod.status.pod_ip:
                continue
            if _is_ready(pod) and pod.metadata.deletion_timestamp is None:
                return f"{pod.status.pod_ip}:{ROUTER_PORT}"
        return None

    def scaling_events(self) -> dict[str, Counter[str]]:
        """Per fleet resource name: how many ScaledUp / ScaledDown / ... Events the operator recorded."""
        events = self.core.list_namespaced_event(
            self.namespace,
            field_selector="involvedObject.kind=InferenceDeployment",
            _request_timeout=TIMEOUT_S,
        ).items
        counts: dict[str, Counter[str]] = {}
        for event in events:
            name = event.involved_object.name or "?"
            repeats = event.count or (event.series.count if event.series else None) or 1
            counts.setdefault(name, Counter())[event.reason or "?"] += int(repeats)
        return counts
