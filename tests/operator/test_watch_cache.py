"""The watch cache's bookkeeping without a server: what it keeps of an object, and lookups by fleet."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tokenfleet_operator.kube import DELETION_COST, HASH_ANNOTATION, KubeApi, kind_path
from tokenfleet_operator.watch_cache import KindCache, trimmed

pytestmark = pytest.mark.unit


def pod(name: str, fleet: str | None, namespace: str = "ml", **status: Any) -> dict[str, Any]:
    labels = {"tokenfleet.io/deployment": fleet} if fleet else {}
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "resourceVersion": "7",
            "annotations": {
                DELETION_COST: "3",
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 500,
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"containers": [{"name": "worker", "image": "w", "args": ["--port", "8000"]}]},
        "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}], **status},
    }


def test_trimmed_keeps_only_what_the_operator_reads() -> None:
    kept = trimmed(pod("p", "chat", phase="Running", containerStatuses=[{"name": "worker"}]))
    assert kept == {
        "metadata": {
            "name": "p",
            "namespace": "ml",
            "labels": {"tokenfleet.io/deployment": "chat"},
            "resourceVersion": "7",
            "annotations": {DELETION_COST: "3"},
        },
        "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    deployment = {
        "metadata": {"name": "d", "namespace": "ml", "generation": 4, "annotations": {HASH_ANNOTATION: "ab"}},
        "spec": {"replicas": 3, "template": {"spec": {}}},
        "status": {"readyReplicas": 2, "observedGeneration": 4},
    }
    assert trimmed(deployment) == {
        "metadata": {"name": "d", "namespace": "ml", "generation": 4, "annotations": {HASH_ANNOTATION: "ab"}},
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2},
    }


def test_objects_are_found_by_name_and_by_fleet_and_forgotten() -> None:
    cache = KindCache(KubeApi(httpx.AsyncClient()), "Pod", ("ml", "other"))
    cache.put(pod("a", "chat"))
    cache.put(pod("b", "chat"))
    cache.put(pod("c", "code"))
    cache.put(pod("a", "chat", namespace="other"))
    assert len(cache) == 4
    assert sorted(p["metadata"]["name"] for p in cache.of_fleet("ml", "chat")) == ["a", "b"]
    assert cache.get("ml", "c") is not None and cache.get("ml", "zzz") is None

    relabelled = pod("b", "code")  # a MODIFIED event that moves a pod to another fleet
    cache.put(relabelled)
    assert [p["metadata"]["name"] for p in cache.of_fleet("ml", "chat")] == ["a"]
    assert sorted(p["metadata"]["name"] for p in cache.of_fleet("ml", "code")) == ["b", "c"]

    cache.drop("ml", "a")
    cache.drop("ml", "a")  # a DELETED event after a relist already dropped it
    assert cache.of_fleet("ml", "chat") == []
    assert [p["metadata"]["name"] for p in cache.of_fleet("other", "chat")] == ["a"]


def test_collection_paths() -> None:
    assert kind_path("Pod", None) == "/api/v1/pods"
    assert kind_path("Deployment", "ml") == "/apis/apps/v1/namespaces/ml/deployments"
    assert kind_path("RoleBinding", None) == "/apis/rbac.authorization.k8s.io/v1/rolebindings"
