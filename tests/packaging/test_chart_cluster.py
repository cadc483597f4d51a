"""The chart against the real API server: server-side validation of everything it renders, restricted
Pod Security, and a full install → reconcile → upgrade → uninstall cycle with the operator running
as a real process under its own service account."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Cluster
from tests.packaging.chart_tools import CHART, find, render, set_flags
from tests.packaging.fleet_tools import (
    apply,
    free_port,
    get_json,
    inference_deployment,
    make_model,
    ready_pods,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def restrict(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("label", "namespace", ns, *(f"{k}={v}" for k, v in RESTRICTED.items()), "--overwrite")


def crds_installed(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    for name in (
        "inferencedeployments.tokenfleet.io",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    ):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=30s")


@pytest.mark.parametrize("mode", ["all-namespaces", "named-namespaces"])
def test_everything_rendered_passes_server_side_validation(cluster: Cluster, mode: str) -> None:
    crds_installed(cluster)
    with cluster.namespace("tpl") as ns:
        restrict(cluster, ns)
        values = {"watchNamespaces": f"{{{ns}}}"} if mode == "named-namespaces" else {}
        docs = render(values={**values, "networkPolicy.enabled": "true"}, namespace=ns)
        assert find(docs, "Deployment") and find(docs, "NetworkPolicy")
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs))
        assert result.stdout.count("(server dry run)") == len(docs), result.stdout
        assert "would violate PodSecurity" not in result.stderr, result.stderr


def test_install_reconcile_upgrade_uninstall(cluster: Cluster, tmp_path: Path) -> None:
    crds_installed(cluster)
    model = make_model(tmp_path / "model")
    with cluster.namespace("helm") as ns:
        restrict(cluster, ns)
        port = free_port()
        # Watch only this namespace: other tests on this cluster run operators of their own.
        flags = set_flags({"watchNamespaces": f"{{{ns}}}", "operator.metricsPort": str(port)})
        cluster.helm("install", "tf", str(CHART), "-n", ns, *flags, "--wait", "--timeout", "120s")
        (operator,) = wait_for(
            "the operator pod Ready", lambda: ready_pods(cluster, ns, "tokenfleet.io/component=operator")
        )
        metrics = httpx.get(f"http://{operator['status']['podIP']}:{port}/metrics", timeout=5).text
        assert "tokenfleet_operator_" in metrics

        # Watching one namespace confines the workload rights to it.
        sa = f"--as=system:serviceaccount:{ns}:tf-tokenfleet-operator"
        for verb, resource, where, expected in [
            ("create", "deployments.apps", ns, "yes"),
            ("create", "deployments.apps", "default", "no"),
            ("patch", "pods", "kube-system", "no"),
            ("get", "secrets", ns, "no"),
        ]:
            answer = cluster.kubectl(
                "auth", "can-i", verb, resource, "-n", where, sa, check=False
            ).stdout.strip()
            assert answer == expected, f"can-i {verb} {resource} -n {where}: {answer}"

        apply(cluster, inference_deployment(ns, "chat", model, mode="off", minReplicas=0))

        def reconciled() -> list[str]:
            names = [d["metadata"]["name"] for d in get_json(cluster, "deployments", "-n", ns)["items"]]
            return names if {"chat-worker-h100", "chat-worker-l40s"} <= set(names) else []

        wait_for("the operator to create the fleet's worker Deployments", reconciled)

        cluster.helm(
            "upgrade",
            "tf",
            str(CHART),
            "-n",
            ns,
            *flags,
            "--set",
            "operator.logLevel=debug",
            "--wait",
            "--timeout",
            "120s",
        )
        history = json.loads(cluster.helm("history", "tf", "-n", ns, "-o", "json").stdout)
        assert [h["revision"] for h in history] == [1, 2] and history[-1]["status"] == "deployed"
        wait_for(
            "the upgraded operator pod Ready",
            lambda: [
                p
                for p in ready_pods(cluster, ns, "tokenfleet.io/component=operator")
                if "--log-level=debug" in p["spec"]["containers"][0]["args"]
            ],
        )
        # The new operator reconciles too: a spec change reaches the children.
        cluster.kubectl(
            "patch", "infdep", "chat", "-n", ns, "--type=merge", "-p", '{"spec":{"routing":{"replicas":2}}}'
        )
        wait_for(
            "the router Deployment to follow the spec",
            lambda: get_json(cluster, "deployment", "chat-router", "-n", ns)["spec"]["replicas"] == 2,
            timeout=60,
        )

        cluster.kubectl("delete", "infdep", "chat", "-n", ns, "--wait=true", "--timeout=60s")
        cluster.helm("uninstall", "tf", "-n", ns, "--wait", "--timeout", "120s")

        def leftovers() -> list[str]:
            kinds = "all,serviceaccounts,roles,rolebindings,networkpolicies,kopfpeerings"
            items = get_json(cluster, kinds, "-n", ns, "-l", "app.kubernetes.io/instance=tf")["items"]
            return [f"{d['kind']}/{d['metadata']['name']}" for d in items]

        # The operator pod terminates after its Deployment is gone: give it its grace period.
        wait_for("the release's objects to be gone", lambda: not leftovers(), timeout=45)
        cluster_left = get_json(
            cluster, "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/instance=tf"
        )
        assert not [d for d in cluster_left["items"] if ns in d["metadata"]["name"]]
        cluster.kubectl("get", "crd", "inferencedeployments.tokenfleet.io")  # Helm never deletes CRDs
