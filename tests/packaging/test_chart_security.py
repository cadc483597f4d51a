"""Security objects of the chart: the workers' NetworkPolicy admits only routers, this operator and
Prometheus (checked against the labels the operator really puts on its pods), and router API keys go
values → Secret → a file the real router accepts as --api-keys-file."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.packaging.chart_tools import CHART, find, helm, render, set_flags
from tests.router.processes import running, start_router
from tokenfleet_operator.child_meta import worker_selector
from tokenfleet_operator.children import router_labels
from tokenfleet_router.auth import load_api_keys

NETPOL = {"networkPolicy.enabled": "true", "watchNamespaces": "{team-a,team-b}"}
KEYS = ("sk-tokenfleet-alpha-0001", "sk-tokenfleet-bravo-0002")


def worker_policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["namespace"]: p for p in find(docs, "NetworkPolicy", "tf-tokenfleet-workers")}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, selector  # no expressions: the rule reads plainly
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.unit
def test_worker_network_policy_admits_only_routers_the_operator_and_prometheus() -> None:
    docs = render(values=NETPOL)
    policies = worker_policies(docs)
    assert set(policies) == {"team-a", "team-b"}
    operator_pod = find(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    for namespace, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert matches(spec["podSelector"], worker_selector("chat", "h100"))
        assert not matches(spec["podSelector"], router_labels("chat"))
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        router, operator, prometheus = rule["from"]
        # Routers of this namespace only: a peer without namespaceSelector is the policy's namespace.
        assert set(router) == {"podSelector"} and matches(router["podSelector"], router_labels("chat"))
        assert not matches(router["podSelector"], worker_selector("chat"))
        assert operator["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "tokenfleet-system"}
        }
        assert matches(operator["podSelector"], operator_pod), namespace
        assert prometheus == {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }


@pytest.mark.unit
def test_worker_policy_namespaces_and_prometheus_peers_come_from_values() -> None:
    peer = '[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]'
    docs = render(
        "--set-json",
        f"networkPolicy.prometheusFrom={peer}",
        values={"networkPolicy.enabled": "true", "networkPolicy.workerNamespaces": "{ml}"},
    )
    (policy,) = worker_policies(docs).values()
    assert policy["metadata"]["namespace"] == "ml"
    assert policy["spec"]["ingress"][0]["from"][2]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    # Watching every namespace and naming none: the chart cannot know where workers run.
    assert not worker_policies(render(values={"networkPolicy.enabled": "true"}))
    assert not worker_policies(render(values={"watchNamespaces": "{team-a}"}))  # off by default


def rendered_key_files(tmp_path: Path) -> dict[str, Path]:
    """The api-keys Secret of each namespace, written out as the kubelet mounts it."""
    docs = render(
        values={"watchNamespaces": "{team-a,team-b}", "routerApiKeys.keys": "{" + ",".join(KEYS) + "}"}
    )
    files = {}
    for secret in find(docs, "Secret"):
        assert secret["metadata"]["name"] == "tokenfleet-router-api-keys"
        data = secret.get("stringData") or {
            k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()
        }
        path = tmp_path / secret["metadata"]["namespace"] / "api-keys"
        path.parent.mkdir()
        path.write_text(data["api-keys"])
        files[secret["metadata"]["namespace"]] = path
    return files


@pytest.mark.unit
def test_api_keys_go_from_values_to_a_secret_per_namespace(tmp_path: Path) -> None:
    files = rendered_key_files(tmp_path)
    assert set(files) == {"team-a", "team-b"}
    assert all(load_api_keys(path) == KEYS for path in files.values())
    assert not find(render(values={"watchNamespaces": "{team-a}"}), "Secret")  # no keys, no Secret


@pytest.mark.unit
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"routerApiKeys.keys": "{sk-short}", "watchNamespaces": "{a}"}, "routerApiKeys"),
        ({"routerApiKeys.keys": "{sk-has a space-0123456}", "watchNamespaces": "{a}"}, "routerApiKeys"),
        ({"routerApiKeys.keys": "{sk-tokenfleet-alpha-0001}"}, "routerApiKeys.namespaces"),
    ],
)
def test_unusable_api_key_values_are_refused(values: dict[str, str], message: str) -> None:
    result = helm("template", "tf", str(CHART), *set_flags(values), check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert message in result.stderr, result.stderr


@pytest.fixture
def keyed_router(tmp_path: Path) -> Iterator[str]:
    keys_file = rendered_key_files(tmp_path)["team-a"]
    server = start_router(tmp_path, "--workers", "http://127.0.0.1:9", "--api-keys-file", str(keys_file))
    with running(server):
        server.wait_ready("/health")
        yield server.url


def test_the_router_accepts_the_secrets_keys_and_refuses_others(keyed_router: str) -> None:
    for key in KEYS:
        response = httpx.get(keyed_router + "/v1/models", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
    for headers in ({}, {"authorization": f"Bearer {KEYS[0]}x"}, {"authorization": KEYS[0]}):
        response = httpx.get(keyed_router + "/v1/models", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        assert error["message"] and KEYS[0] not in response.text
