"""Every Kubernetes API call the operator makes (besides kopf's own watching), in one place.

Children are written with server-side apply under the field manager `tokenfleet-operator`, and only
when they differ from what is there: each applied object carries a hash of its desired form, compared
with the watch-cached live object (watch_cache.py), so a resync of an unchanged fleet neither reads nor
writes. `requests` counts calls by verb (LIST and WATCH for the caches) for tests and the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx

from tokenfleet_operator import FIELD_MANAGER, GROUP, PLURAL, VERSION

HASH_ANNOTATION = "tokenfleet.io/applied-hash"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Concurrent requests per client; more wait their turn. An API server that is short of CPU does not
# answer faster for being asked more at once: a small pool and a patient timeout keep an overloaded one
# from timing out every request (and every retry) instead of finishing some.
API_CONNECTIONS = 16
REQUEST_SECONDS = 30.0

_KINDS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Pod": ("/api/v1", "pods"),
}


class KubeError(Exception):
    """The API server refused a request; the message carries its status and reason."""


def object_path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def kind_path(kind: str, namespace: str | None) -> str:
    """The collection of `kind` in one namespace, or in every namespace when None."""
    if namespace is not None:
        return object_path(kind, namespace)
    prefix, plural = _KINDS[kind]
    return f"{prefix}/{plural}"


def fleet_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def desired_hash(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def with_hash(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with its own hash annotated, ready to apply."""
    stamped = json.loads(json.dumps(manifest))
    stamped["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = desired_hash(manifest)
    return stamped


def is_up_to_date(live: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> bool:
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(HASH_ANNOTATION) == desired_hash(manifest)


class KubeApi:
    def __init__(self, client: httpx.AsyncClient, auth_headers: Callable[[], dict[str, str]] = dict) -> None:
        self._client = client
        self._auth_headers = auth_headers
        self.requests: Counter[str] = Counter()
        self.on_request: Callable[[str], None] = lambda verb: None  # e.g. a Prometheus counter

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: str | None = None, max_connections: int | None = API_CONNECTIONS
    ) -> KubeApi:
        """Credentials from a kubeconfig file, or the in-cluster service account when there is none.

        `max_connections` None: no limit (a client for long-lived watches, one connection each).
        """
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config

        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        except (k8s_config.ConfigException, OSError, TypeError):
            if kubeconfig:
                raise
            k8s_config.load_incluster_config(client_configuration=configuration)
        verify: ssl.SSLContext | bool = bool(configuration.verify_ssl)
        if configuration.verify_ssl:
            context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
            if configuration.cert_file:
                context.load_cert_chain(configuration.cert_file, configuration.key_file)
            verify = context

        def auth_headers() -> dict[str, str]:
            # Refreshes rotated tokens; the client stores "Bearer <token>" under BearerToken.
            token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
            return {"Authorization": token} if token else {}

        # Many fleets reconcile at once: requests queue for a connection for as long as it takes (the
        # pool bounds the load on the API server), while each request itself still times out.
        client = httpx.AsyncClient(
            base_url=configuration.host,
            verify=verify,
            timeout=httpx.Timeout(REQUEST_SECONDS, connect=10.0, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        return cls(client, auth_headers)

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        **params: Any,
    ) -> httpx.Response:
        self.requests[method] += 1
        self.on_request(method)
        headers = {"Accept": "application/json", **self._auth_headers()}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = json.dumps(body).encode()
        response = await self._client.request(
            method, path, headers=headers, content=content, params=params or None
        )
        # 404 means "absent" only for reads and deletes; a write that 404s (say, a RoleBinding whose
        # namespace or Role is not there yet) failed and must be retried, not counted as written.
        absent_ok = method in ("GET", "DELETE") and response.status_code == 404
        if response.status_code >= 400 and not absent_ok:
            raise KubeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    async def get(self, path: str) -> dict[str, Any] | None:
        response = await self._request("GET", path)
        return None if response.status_code == 404 else dict(response.json())

    async def apply(
        self, manifest: Mapping[str, Any], live: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """Server-side apply `manifest` unless `live` (what is there, as cached) already matches it.

        Returns the object as written, or None when nothing was written.
        """
        if is_up_to_date(live, manifest):
            return None
        meta = manifest["metadata"]
        response = await self._request(
            "PATCH",
            object_path(manifest["kind"], meta["namespace"], meta["name"]),
            body=with_hash(manifest),
            content_type="application/apply-patch+yaml",
            fieldManager=FIELD_MANAGER,
            force="true",
        )
        return dict(response.json())

    async def list_all(self, path: str, selector: str, page: int = 500) -> dict[str, Any]:
        """Every object under `path` matching `selector`, page by page: {"items": [...], "metadata"}."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"labelSelector": selector, "limit": page}
        while True:
            self.requests["LIST"] += 1
            self.on_request("LIST")
            response = await self._client.get(
                path, headers={"Accept": "application/json", **self._auth_headers()}, params=params
            )
            if response.status_code >= 400:
                raise KubeError(f"LIST {path}: {response.status_code} {response.text[:500]}")
            body = response.json()
            items.extend(body.get("items") or [])
            metadata = body.get("metadata") or {}
            if not metadata.get("continue"):
                return {"items": items, "metadata": metadata}
            params["continue"] = metadata["continue"]

    def watch(
        self, path: str, selector: str, resource_version: str, seconds: int
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """A streamed watch from `resource_version`; the server ends it after `seconds`."""
        self.requests["WATCH"] += 1
        self.on_request("WATCH")
        params: dict[str, str | int] = {
            "watch": "true",
            "labelSelector": selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": seconds,
        }
        return self._client.stream(
            "GET",
            path,
            params=params,
            headers={"Accept": "application/json", **self._auth_headers()},
            timeout=httpx.Timeout(10.0, read=seconds + 30.0, pool=None),
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self._request(
            "DELETE", object_path(kind, namespace, name), body={"propagationPolicy": "Background"}
        )

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._request(
            "PATCH",
            fleet_path(namespace, name) + "/status",
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
        )

    async def set_fleet_replicas(self, namespace: str, name: str, replicas: int) -> int:
        """Write spec.replicas through /scale; returns the resource's generation after the write.

        The write bumps metadata.generation, and the Scale answer does not carry it: reading it back lets
        the same tick report it as observed, instead of a second status write on the next tick.
        """
        await self._request(
            "PATCH",
            fleet_path(namespace, name) + "/scale",
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
        )
        live = await self.get(fleet_path(namespace, name))
        return int(((live or {}).get("metadata") or {}).get("generation", 0))

    async def set_deletion_costs(
        self, namespace: str, pods: list[dict[str, Any]], costs: Mapping[str, int]
    ) -> int:
        """Annotate pods whose deletion cost differs; returns how many were written."""
        written = 0
        for pod in pods:
            meta = pod.get("metadata") or {}
            name = meta.get("name", "")
            if name not in costs or (meta.get("annotations") or {}).get(DELETION_COST) == str(costs[name]):
                continue
            patch = {"metadata": {"annotations": {DELETION_COST: str(costs[name])}}}
            await self._request(
                "PATCH",
                object_path("Pod", namespace, name),
                body=patch,
                content_type="application/merge-patch+json",
            )
            written += 1
        return written

    async def post_event(
        self, namespace: str, fleet: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        meta = fleet.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'fleet')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "InferenceDeployment",
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)
