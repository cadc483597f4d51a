"""Security objects on the real API server. Pod Security: in a namespace that *enforces* the
`restricted` standard, the pods the operator creates for a fleet (workers of every variant, the router)
and the chart's operator pod are admitted, while a pod that breaks the standard is refused (so
enforcement is really on). The workers' NetworkPolicy and the router API-key Secret validate as
rendered."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.packaging.chart_tools import find, render
from tokenfleet_operator.child_meta import Owner
from tokenfleet_operator.children import build_children
from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.settings import OperatorSettings

pytestmark = pytest.mark.e2e

ENFORCED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}
SPEC = parse_spec(
    {
        "model": {"name": "chat", "uri": "pvc://models/llama"},
        "accelerators": [
            {"name": "h100", "hourlyCost": 4.0},
            {"name": "l4", "hourlyCost": 0.8, "count": 2},
        ],
    }
)


def pods_of(deployments: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """A bare Pod for each Deployment's template: Pod Security enforcement acts on pods."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": d["metadata"]["name"], "namespace": namespace},
            "spec": copy.deepcopy(d["spec"]["template"]["spec"]),
        }
        for d in deployments
    ]


def dry_run_create(cluster: Cluster, doc: dict[str, Any]) -> tuple[bool, str]:
    result = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False)
    return result.returncode == 0, result.stdout + result.stderr


def test_operator_made_and_chart_pods_are_admitted_where_restricted_is_enforced(cluster: Cluster) -> None:
    with cluster.namespace("pss") as ns:
        cluster.kubectl("label", "namespace", ns, *(f"{k}={v}" for k, v in ENFORCED.items()), "--overwrite")
        owner = Owner(name="chat", namespace=ns, uid="00000000-0000-0000-0000-000000000001")
        children = build_children(owner, SPEC, {"h100": 1, "l4": 1}, OperatorSettings())
        deployments = [c for c in children if c["kind"] == "Deployment"]
        assert {d["metadata"]["name"] for d in deployments} == {
            "chat-worker-h100",
            "chat-worker-l4",
            "chat-router",
        }
        chart = render(namespace=ns)
        operator = find(chart, "Deployment")
        # Pods name their service accounts, which admission looks up: create those for real.
        for account in [c for c in children if c["kind"] == "ServiceAccount"] + find(chart, "ServiceAccount"):
            plain = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account["metadata"]["name"]},
            }
            cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(plain))
        for pod in pods_of(deployments + operator, ns):
            admitted, output = dry_run_create(cluster, pod)
            assert admitted and "PodSecurity" not in output, f"{pod['metadata']['name']}: {output}"

        # The control: the same worker pod running as root with privilege escalation is refused.
        (bad,) = pods_of(deployments[:1], ns)
        container = bad["spec"]["containers"][0]
        container["securityContext"].update(allowPrivilegeEscalation=True, runAsNonRoot=False, runAsUser=0)
        admitted, output = dry_run_create(cluster, bad)
        assert not admitted and "violates PodSecurity" in output and "restricted" in output, output


def test_worker_network_policy_and_key_secret_validate_server_side(cluster: Cluster) -> None:
    with cluster.namespace("sec") as ns:
        values = {
            "networkPolicy.enabled": "true",
            "watchNamespaces": f"{{{ns}}}",
            "routerApiKeys.keys": "{sk-tokenfleet-alpha-0001}",
        }
        docs = [d for d in render(values=values, namespace=ns) if d["kind"] in ("NetworkPolicy", "Secret")]
        assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
            ("NetworkPolicy", "tf-tokenfleet-operator"),
            ("NetworkPolicy", "tf-tokenfleet-workers"),
            ("Secret", "tokenfleet-router-api-keys"),
        }
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs))
        assert result.stdout.count("(server dry run)") == len(docs), result.stdout
