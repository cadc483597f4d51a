"""`kubectl apply` of manifests/ on the real API server: it validates as-is, brings up a working
operator under its own service account, reconciles the sample, and RBAC grants what the operator
needs and nothing it does not (checked with `kubectl auth can-i`, not assumed)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster
from tests.packaging.chart_tools import MANIFESTS
from tests.packaging.fleet_tools import free_port, get_json, ready_pods
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

SYSTEM_NS = "tokenfleet-system"
OPERATOR = f"system:serviceaccount:{SYSTEM_NS}:tokenfleet-operator"


def overlay(tmp_path: Path, watch: str, port: int) -> Path:
    """The manifests, unchanged, under a kustomize overlay that only narrows what the operator watches:
    other tests on this shared cluster run operators of their own in their namespaces."""
    shutil.copytree(MANIFESTS, tmp_path / "base", ignore=shutil.ignore_patterns("samples"))
    args = [
        f"--namespace={watch}",
        "--peering=tokenfleet",
        f"--metrics-port={port}",
        "--worker-image=ghcr.io/tokenfleet/worker:0.1.0",
        "--router-image=ghcr.io/tokenfleet/router:0.1.0",
    ]
    container = "/spec/template/spec/containers/0"
    patch = [
        {"op": "replace", "path": f"{container}/args", "value": args},
        {"op": "replace", "path": f"{container}/ports/0/containerPort", "value": port},
    ]
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "tokenfleet", "namespace": watch},
    }
    (tmp_path / "peering.yaml").write_text(yaml.safe_dump(peering))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["base", "peering.yaml"],
        "patches": [
            {"target": {"kind": "Deployment", "name": "tokenfleet-operator"}, "patch": json.dumps(patch)}
        ],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return tmp_path


@pytest.fixture(scope="module")
def installed(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """Install once for the module: CRDs first (as the README says), then the rest."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(MANIFESTS / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    with cluster.namespace("mf") as watched:
        port = free_port()
        cluster.kubectl("apply", "-k", str(overlay(tmp_path_factory.mktemp("overlay"), watched, port)))
        try:
            yield watched, port
        finally:
            cluster.kubectl(
                "delete", "infdep", "--all", "-n", watched, "--wait=true", "--timeout=60s", check=False
            )
            cluster.kubectl(
                "delete",
                "-f",
                str(MANIFESTS),
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
                check=False,
            )


def test_plain_files_validate_server_side_without_pod_security_warnings(
    cluster: Cluster, installed: tuple[str, int]
) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(MANIFESTS))
    docs = [d for p in MANIFESTS.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    assert result.stdout.count("(server dry run)") == len(docs), result.stdout
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    labels = get_json(cluster, "namespace", SYSTEM_NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_comes_up_and_reconciles_the_sample(cluster: Cluster, installed: tuple[str, int]) -> None:
    watched, _ = installed
    wait_for(
        "the operator pod Ready", lambda: ready_pods(cluster, SYSTEM_NS, "tokenfleet.io/component=operator")
    )
    sample = MANIFESTS / "samples" / "inferencedeployment.yaml"
    cluster.kubectl("apply", "-n", watched, "-f", str(sample))

    def children() -> set[str]:
        names = {d["metadata"]["name"] for d in get_json(cluster, "deployments", "-n", watched)["items"]}
        return names if {"chat-worker-h100", "chat-worker-l40s", "chat-router"} <= names else set()

    wait_for("the sample's worker and router Deployments", children, timeout=60)
    owners = get_json(cluster, "deployment", "chat-router", "-n", watched)["metadata"]["ownerReferences"]
    assert owners[0]["kind"] == "InferenceDeployment" and owners[0]["name"] == "chat"
    status = wait_for(
        "status written by the operator",
        lambda: (
            get_json(cluster, "infdep", "chat", "-n", watched).get("status", {}).get("observedGeneration")
        ),
    )
    assert status >= 1


def can_i(cluster: Cluster, verb: str, resource: str, *scope: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, *scope, f"--as={OPERATOR}", check=False)
    return result.stdout.strip() == "yes"


ALLOWED = [
    ("watch", "inferencedeployments.tokenfleet.io", "-A"),
    ("patch", "inferencedeployments.tokenfleet.io", "--subresource=status", "-n", "team-a"),
    ("update", "inferencedeployments.tokenfleet.io", "--subresource=scale", "-n", "team-a"),
    ("create", "deployments.apps", "-n", "team-a"),
    ("delete", "services", "-n", "team-a"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", "team-a"),
    ("patch", "pods", "-n", "team-a"),
    ("create", "events", "-n", "team-a"),
    ("update", "leases.coordination.k8s.io", "-n", SYSTEM_NS),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "clusterkopfpeerings.kopf.dev"),
]
DENIED = [
    ("get", "secrets", "-n", "team-a"),
    ("list", "secrets", "-A"),
    ("get", "secrets", "-n", SYSTEM_NS),
    ("get", "configmaps", "-n", "kube-system"),
    ("create", "pods", "-n", "team-a"),
    ("delete", "pods", "-n", "team-a"),
    ("create", "pods", "--subresource=exec", "-n", "team-a"),
    ("create", "daemonsets.apps", "-n", "team-a"),
    ("create", "statefulsets.apps", "-n", "team-a"),
    ("delete", "namespaces"),
    ("patch", "nodes"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "serviceaccounts", "--subresource=token", "-n", "team-a"),
    ("impersonate", "serviceaccounts", "-n", "team-a"),
    ("escalate", "roles.rbac.authorization.k8s.io", "-n", "team-a"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("delete", "inferencedeployments.tokenfleet.io", "-n", "team-a"),
    ("update", "deployments.apps", "--subresource=scale", "-n", "team-a"),
    ("patch", "pods", "--subresource=status", "-n", "team-a"),
]


def test_rbac_allows_exactly_what_the_operator_needs(cluster: Cluster, installed: tuple[str, int]) -> None:
    allowed = {" ".join(c): can_i(cluster, *c) for c in ALLOWED}
    denied = {" ".join(c): can_i(cluster, *c) for c in DENIED}
    assert all(allowed.values()), {k: v for k, v in allowed.items() if not v}
    assert not any(denied.values()), {k: v for k, v in denied.items() if v}
