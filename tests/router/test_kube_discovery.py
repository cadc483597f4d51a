"""Kubernetes discovery against a real API server (the shared local control plane).

Pods are bound to a node that does not exist, so no scheduler, kubelet or kwok touches them;
the test sets their status itself, which is exactly what the router watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tokenfleet_router.discovery import KubernetesDiscovery

pytestmark = pytest.mark.e2e
SELECTOR = "app=router-discovery-test"


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels, "annotations": {"tokenfleet.io/port": "9000"}},
        "spec": {"nodeName": "router-test-no-such-node", "containers": [{"name": "c", "image": "fake"}]},
    }


async def check_discovery(kubeconfig: Path, namespace: str) -> None:
    """Ready pods appear, unready and terminating ones leave, through watch renewals."""
    from kubernetes import client, config

    api: Any = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    with contextlib.suppress(client.ApiException):  # the controller may not have made it yet
        api.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})

    def set_status(name: str, ready: bool, ip: str) -> None:
        condition = {"type": "Ready", "status": "True" if ready else "False"}
        status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [condition]}
        api.patch_namespaced_pod_status(name, namespace, {"status": status})

    seen: list[list[tuple[str, str]]] = []
    discovery = KubernetesDiscovery(namespace, SELECTOR, 8000, kubeconfig=str(kubeconfig), watch_timeout_s=2)
    task = asyncio.create_task(discovery.run(lambda eps: seen.append(sorted((e.name, e.url) for e in eps))))

    async def expect(value: list[tuple[str, str]], what: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if seen and seen[-1] == value:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: last pushed {seen[-1:]}, wanted {value}")

    try:
        await expect([], "the initial list")
        api.create_namespaced_pod(namespace, _pod("w1", {"app": "router-discovery-test"}))
        api.create_namespaced_pod(namespace, _pod("stranger", {"app": "someone-else"}))
        set_status("stranger", True, "10.9.0.9")
        await asyncio.sleep(0.5)
        assert seen[-1] == [], "a pending pod or one outside the selector is no endpoint"
        set_status("w1", True, "10.9.0.5")
        await expect([("w1", "http://10.9.0.5:9000")], "a ready pod appears with its annotated port")
        set_status("w1", False, "10.9.0.5")
        await expect([], "an unready pod leaves")
        set_status("w1", True, "10.9.0.5")
        await expect([("w1", "http://10.9.0.5:9000")], "and comes back")
        await asyncio.sleep(5)  # two watch timeouts: the watch resumes from its resourceVersion
        api.create_namespaced_pod(namespace, _pod("w2", {"app": "router-discovery-test"}))
        set_status("w2", True, "10.9.0.6")
        await expect([("w1", "http://10.9.0.5:9000"), ("w2", "http://10.9.0.6:9000")], "after watch renewals")
        api.delete_namespaced_pod("w1", namespace, grace_period_seconds=60)  # bound: stays, terminating
        await expect([("w2", "http://10.9.0.6:9000")], "a terminating (draining) pod leaves at once")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for name in ("w1", "w2", "stranger"):
            with contextlib.suppress(client.ApiException):
                api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


async def test_discovery_follows_pods(cluster: Cluster) -> None:
    with cluster.namespace("router") as namespace:
        await check_discovery(cluster.kubeconfig, namespace)
