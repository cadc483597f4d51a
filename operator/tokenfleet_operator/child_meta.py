"""How a fleet's children are named, labelled, owned and secured (pure; used by builders and readers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenfleet_operator import GROUP, KIND, VERSION

LABEL_DEPLOYMENT = "tokenfleet.io/deployment"
LABEL_VARIANT = "tokenfleet.io/variant"
LABEL_COMPONENT = "tokenfleet.io/component"


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def worker_deployment_name(fleet: str, variant: str) -> str:
    return f"{fleet}-worker-{variant}"


def workers_service_name(fleet: str) -> str:
    return f"{fleet}-workers"


def router_name(fleet: str) -> str:
    return f"{fleet}-router"


def worker_selector(fleet: str, variant: str | None = None) -> dict[str, str]:
    labels = {LABEL_DEPLOYMENT: fleet, LABEL_COMPONENT: "worker"}
    if variant is not None:
        labels[LABEL_VARIANT] = variant
    return labels


def selector_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def object_metadata(owner: Owner, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {
            "app.kubernetes.io/managed-by": "tokenfleet-operator",
            "app.kubernetes.io/part-of": "tokenfleet",
            **labels,
        },
        "ownerReferences": [owner.reference()],
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_ip_env() -> list[dict[str, Any]]:
    return [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def http_probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}
