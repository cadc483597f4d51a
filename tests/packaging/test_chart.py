"""The Helm chart: lint-clean, renders what the manifests install, refuses bad values with a clear
message, and keeps its CRDs and alert rules identical to their sources."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.packaging.chart_tools import (
    CHART,
    MANIFESTS,
    find,
    helm,
    manifest_docs,
    normalized_rules,
    render,
    set_flags,
)
from tokenfleet_devkit.packaging import sync

MONITORING_APIS = [
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PodMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
]
ALL_FEATURES = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.podMonitor.enabled": "true",
    "metrics.prometheusRule.enabled": "true",
    "networkPolicy.enabled": "true",
}


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": "{team-a,team-b}"}, ALL_FEATURES])
def test_helm_lint_is_clean(values: dict[str, str]) -> None:
    result = helm("lint", "--strict", str(CHART), *set_flags(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(docs, "Deployment")
    return deployment


def test_defaults_render_a_restricted_operator_the_launcher_can_run() -> None:
    deployment = operator_deployment(render())
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["tokenfleet.io/component"] == "operator"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["tokenfleet-operator"]
    assert container["image"] == "ghcr.io/tokenfleet/operator:0.1.0"
    assert "--all-namespaces" in container["args"] and "--peering=tokenfleet" in container["args"]
    assert "--worker-image=ghcr.io/tokenfleet/worker:0.1.0" in container["args"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"] and security["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["resources"]["requests"]["memory"]


def test_manifests_and_chart_install_the_same_operator() -> None:
    chart, manifests = render(), manifest_docs()
    (chart_role,) = find(chart, "ClusterRole")
    (manifest_role,) = find(manifests, "ClusterRole")
    assert normalized_rules(chart_role["rules"]) == normalized_rules(manifest_role["rules"])
    chart_pod = operator_deployment(chart)["spec"]["template"]["spec"]
    manifest_pod = operator_deployment(manifests)["spec"]["template"]["spec"]
    (chart_c,), (manifest_c,) = chart_pod["containers"], manifest_pod["containers"]
    assert chart_c["image"] == manifest_c["image"]
    assert chart_c["securityContext"] == manifest_c["securityContext"]
    assert chart_pod["securityContext"] == manifest_pod["securityContext"]
    assert set(manifest_c["args"]) <= set(chart_c["args"]) | {"--log-level=info"}
    assert find(chart, "ClusterKopfPeering") and find(manifests, "ClusterKopfPeering")


def test_rbac_has_no_wildcards_and_no_secrets() -> None:
    for docs in (render(), render(values={"watchNamespaces": "{team-a}"}), manifest_docs()):
        for role in find(docs, "ClusterRole") + find(docs, "Role"):
            for group, resource, verb in normalized_rules(role["rules"]):
                assert "*" not in (group, resource, verb), role["metadata"]["name"]
                assert resource not in {"secrets", "configmaps", "pods/exec", "nodes"}, resource
                assert not (resource == "pods" and verb in {"create", "delete"})


def test_watching_named_namespaces_confines_workload_rights_to_them() -> None:
    docs = render(values={"watchNamespaces": "{team-a,team-b}"})
    (cluster_role,) = find(docs, "ClusterRole")
    cluster_resources = {r for _, r, _ in normalized_rules(cluster_role["rules"])}
    assert cluster_resources == {
        "customresourcedefinitions",
        "namespaces",
        "clusterkopfpeerings",
        "kopfpeerings",
    }
    roles = {r["metadata"]["namespace"] for r in find(docs, "Role")}
    bindings = {b["metadata"]["namespace"] for b in find(docs, "RoleBinding")}
    assert roles == bindings == {"team-a", "team-b", "tokenfleet-system"}
    args = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    assert {p["metadata"]["namespace"] for p in find(docs, "KopfPeering")} == {"team-a", "team-b"}


def test_values_reach_the_pod() -> None:
    docs = render(
        "--set-json",
        'tolerations=[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]',
        "--set-json",
        'imagePullSecrets=[{"name":"regcred"}]',
        values={
            "image.tag": "1.2.3",
            "nodeSelector.pool": "system",
            "resources.limits.memory": "1Gi",
            "peering.enabled": "false",
            "operator.metricsPort": "9500",
        },
    )
    pod = operator_deployment(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/tokenfleet/operator:1.2.3"
    assert pod["nodeSelector"] == {"pool": "system"} and pod["tolerations"][0]["key"] == "dedicated"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert "--standalone" in container["args"] and "--metrics-port=9500" in container["args"]
    assert container["ports"][0]["containerPort"] == 9500
    assert not find(docs, "ClusterKopfPeering")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"image.pullPolicy": "Sometimes"}, "pullPolicy"),
        ({"replicaCount": "0"}, "replicaCount"),
        ({"operator.metricsPort": "80"}, "metricsPort"),
        ({"watchNamespaces": "{Bad_Namespace}"}, "watchNamespaces"),
        ({"operator.logLevel": "verbose"}, "logLevel"),
        ({"replicas": "3"}, "replicas"),
        ({"peering.enabled": "false", "replicaCount": "2"}, "replicaCount"),
        ({"metrics.serviceMonitor.interval": "soon"}, "interval"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(values: dict[str, str], message: str) -> None:
    result = helm("template", "tf", str(CHART), *set_flags(values), check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_monitoring_objects_only_when_the_prometheus_operator_is_there() -> None:
    assert not {d["kind"] for d in render(values=ALL_FEATURES)} & {
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    }
    docs = render(*MONITORING_APIS, values=ALL_FEATURES)
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    (pod_monitor,) = find(docs, "PodMonitor")
    relabeled = {r["targetLabel"] for r in pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert {"infdep", "variant"} <= relabeled
    (rule,) = find(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(sync.ALERTS.read_text())
    (policy,) = find(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == "metrics"


def test_chart_crds_are_identical_to_the_manifests() -> None:
    chart_crds = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    manifest_crds = {p.name: p.read_text() for p in (MANIFESTS / "crds").glob("*.yaml")}
    assert chart_crds == manifest_crds, "run `python -m tokenfleet_devkit.packaging.sync`"


def test_manifest_crd_is_the_operators_generated_one() -> None:
    from tokenfleet_operator import crd

    text = (MANIFESTS / "crds" / f"{crd.CRD_NAME}.yaml").read_text()
    assert text == crd.render(), "regenerate with `python -m tokenfleet_operator.crd`"


def test_notes_say_how_to_check_and_warn_about_missing_monitoring_crds() -> None:
    out = helm("install", "tf", str(CHART), "--dry-run=client", *set_flags(ALL_FEATURES)).stdout
    assert "rollout status deployment/tf-tokenfleet-operator" in out
    assert "Prometheus Operator's CRDs are missing" in out
