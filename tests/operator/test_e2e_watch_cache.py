"""The watch cache against the real control plane: pods created, changed and deleted show up in the
operator's view within moments, without the operator reading them one by one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tokenfleet_operator.fleet_pods import UNSCHEDULABLE, pod_state
from tokenfleet_operator.kube import DELETION_COST, KubeApi
from tokenfleet_operator.watch_cache import ClusterCache

pytestmark = pytest.mark.e2e


def pending_pod(name: str, fleet: str | None) -> dict[str, Any]:
    """A pod no node can take (so no process runs it), labelled as one of `fleet`'s workers."""
    labels = {"tokenfleet.io/deployment": fleet, "tokenfleet.io/component": "worker"} if fleet else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {"tokenfleet.io/no-such-node": "true"},
            "containers": [{"name": "worker", "image": "ghcr.io/tokenfleet/worker:0.1.0"}],
        },
    }


async def eventually(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_pods_created_changed_and_deleted_show_up_in_the_cache(crd: Cluster) -> None:
    cluster = crd
    with cluster.namespace("cache") as ns:
        api = KubeApi.from_kubeconfig(str(cluster.kubeconfig), max_connections=None)
        cache = ClusterCache(api, (ns,))
        await cache.start(timeout=30)
        try:
            assert api.requests["LIST"] == 6 and api.requests["WATCH"] == 6  # one list+watch per kind
            assert cache.of_fleet("Pod", ns, "chat") == []
            for name, fleet in (("w-1", "chat"), ("w-2", "chat"), ("other", None)):
                manifest = yaml.safe_dump(pending_pod(name, fleet))
                await asyncio.to_thread(cluster.kubectl, "apply", "-n", ns, "-f", "-", input=manifest)

            def names() -> set[str]:
                return {p["metadata"]["name"] for p in cache.of_fleet("Pod", ns, "chat")}

            await eventually("both pods in the cache", lambda: names() == {"w-1", "w-2"})
            assert cache.get("Pod", ns, "other") is None  # not ours: not watched, not kept

            # Status and annotations follow the live object: the scheduler's verdict, a deletion cost.
            def state() -> str | None:
                found = cache.get("Pod", ns, "w-1")
                return pod_state(found) if found else None

            await eventually("the scheduler's Unschedulable", lambda: state() == UNSCHEDULABLE)
            patch = json.dumps({"metadata": {"annotations": {DELETION_COST: "5"}}})
            await asyncio.to_thread(
                cluster.kubectl, "patch", "pod", "w-1", "-n", ns, "--type=merge", "-p", patch
            )

            def cost() -> str | None:
                found = cache.get("Pod", ns, "w-1") or {}
                return (found.get("metadata", {}).get("annotations") or {}).get(DELETION_COST)

            await eventually("the deletion cost", lambda: cost() == "5")

            await asyncio.to_thread(
                cluster.kubectl, "delete", "pod", "w-2", "-n", ns, "--grace-period=0", "--force"
            )
            await eventually("the deleted pod to leave the cache", lambda: names() == {"w-1"})
            assert api.requests["LIST"] == 6 and api.requests["GET"] == 0  # all by watch, no reads
        finally:
            await cache.stop()
            await api.close()
