"""The API layer without a server: paths, credentials, and the applied-hash behind zero-write resyncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenfleet_operator.kube import (
    HASH_ANNOTATION,
    KubeApi,
    desired_hash,
    fleet_path,
    is_up_to_date,
    object_path,
    with_hash,
)

pytestmark = pytest.mark.unit

MANIFEST: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "chat-worker-h100", "namespace": "ml", "labels": {"a": "b"}},
    "spec": {"replicas": 2},
}


def test_paths() -> None:
    assert object_path("Deployment", "ml", "x") == "/apis/apps/v1/namespaces/ml/deployments/x"
    assert object_path("Service", "ml") == "/api/v1/namespaces/ml/services"
    assert (
        object_path("RoleBinding", "ml", "r")
        == "/apis/rbac.authorization.k8s.io/v1/namespaces/ml/rolebindings/r"
    )
    assert fleet_path("ml", "chat") == "/apis/tokenfleet.io/v1alpha1/namespaces/ml/inferencedeployments/chat"


def test_hash_marks_the_live_object_up_to_date() -> None:
    stamped = with_hash(MANIFEST)
    assert stamped["metadata"]["annotations"][HASH_ANNOTATION] == desired_hash(MANIFEST)
    assert "annotations" not in MANIFEST["metadata"]  # the input is not modified
    live = {
        **stamped,
        "status": {"readyReplicas": 1},
        "metadata": {**stamped["metadata"], "resourceVersion": "9"},
    }
    assert is_up_to_date(live, MANIFEST)
    assert not is_up_to_date(None, MANIFEST)
    changed = {**MANIFEST, "spec": {"replicas": 3}}
    assert not is_up_to_date(live, changed)


def test_hash_ignores_key_order() -> None:
    reordered = {
        "spec": {"replicas": 2},
        "metadata": dict(reversed(MANIFEST["metadata"].items())),
        **MANIFEST,
    }
    assert desired_hash(reordered) == desired_hash(MANIFEST)


def test_kubeconfig_token_becomes_the_authorization_header(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "abc123"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    api = KubeApi.from_kubeconfig(str(path))
    assert api._auth_headers() == {"Authorization": "Bearer abc123"}
    assert str(api._client.base_url) == "https://127.0.0.1:6443"
