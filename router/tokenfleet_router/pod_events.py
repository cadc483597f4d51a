"""The fleet's endpoints as a pure function of Kubernetes Pod watch events.

A pod is an endpoint only while it is Running, its Ready condition is True, it has a pod IP and
it is not being deleted (a deletionTimestamp means it is draining: no new requests). Its port
comes from the `tokenfleet.io/port` annotation, else the label of the same name, else the
router's default. Pods are plain dicts as the API server sends them (camelCase keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenfleet_router.types import Endpoint

PORT_KEY = "tokenfleet.io/port"


@dataclass(frozen=True)
class PodSet:
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # pod name -> endpoint
    resource_version: str = ""


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again and start over."""


def _pod_port(metadata: Mapping[str, Any], default_port: int) -> int:
    for source in (metadata.get("annotations") or {}, metadata.get("labels") or {}):
        value = source.get(PORT_KEY)
        if value is not None:
            try:
                port = int(value)
            except (TypeError, ValueError):
                continue
            if 0 < port < 65536:
                return port
    return default_port


def pod_endpoint(pod: Mapping[str, Any], default_port: int) -> Endpoint | None:
    """The endpoint for a pod that may take requests, else None."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    ip = status.get("podIP")
    is_ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not ip or not is_ready:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return Endpoint(name=metadata.get("name", ip), url=f"http://{host}:{_pod_port(metadata, default_port)}")


def state_from_list(pods: Iterable[Mapping[str, Any]], resource_version: str, default_port: int) -> PodSet:
    """The state after a full LIST, the start of every (re)sync."""
    endpoints = {}
    for pod in pods:
        endpoint = pod_endpoint(pod, default_port)
        if endpoint is not None:
            endpoints[endpoint.name] = endpoint
    return PodSet(endpoints, resource_version)


def apply_event(state: PodSet, event: Mapping[str, Any], default_port: int) -> PodSet:
    """The state after one watch event; raises WatchExpired for a 410, ValueError for other errors."""
    kind = event.get("type")
    obj = event.get("object") or {}
    if kind == "ERROR":
        if obj.get("code") == 410:
            raise WatchExpired(obj.get("message", "resource version too old"))
        raise ValueError(f"watch error: {obj.get('message', obj)}")
    version = (obj.get("metadata") or {}).get("resourceVersion") or state.resource_version
    if kind == "BOOKMARK":
        return PodSet(state.endpoints, version)
    name = (obj.get("metadata") or {}).get("name")
    if kind not in ("ADDED", "MODIFIED", "DELETED") or not name:
        return PodSet(state.endpoints, version)
    endpoints = dict(state.endpoints)
    endpoint = None if kind == "DELETED" else pod_endpoint(obj, default_port)
    if endpoint is None:
        endpoints.pop(name, None)
    else:
        endpoints[name] = endpoint
    return PodSet(endpoints, version)
