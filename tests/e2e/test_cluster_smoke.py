"""The local control plane is a real one: GPU scheduling, unschedulable pods, garbage collection,
RBAC with service accounts, and pods run as real processes by the launcher."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def pods(cluster: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json")
    return list(json.loads(out.stdout)["items"])


def gpu_deployment(ns: str, name: str, gpus: int, product: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": product},
                    "containers": [
                        {"name": "c", "image": "fake", "resources": {"limits": {"nvidia.com/gpu": gpus}}}
                    ],
                },
            },
        },
    }


def test_nodes_advertise_gpus_of_two_products(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json").stdout)["items"]
    gpus: dict[str, int] = {}
    for node in nodes:
        product = node["metadata"]["labels"]["nvidia.com/gpu.product"]
        gpus[product] = gpus.get(product, 0) + int(node["status"]["allocatable"]["nvidia.com/gpu"])
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    assert gpus == {"NVIDIA-H100-80GB-HBM3": 32, "NVIDIA-L40S": 16}
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.37")


def test_gpu_pods_land_on_matching_nodes_and_oversized_ones_stay_unschedulable(cluster: Cluster) -> None:
    with cluster.namespace("smoke") as ns:
        docs = [
            gpu_deployment(ns, "l40s", gpus=4, product="NVIDIA-L40S", replicas=4),
            gpu_deployment(ns, "huge", gpus=16, product="NVIDIA-H100-80GB-HBM3", replicas=1),
        ]
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))

        def l40s_running() -> list[dict[str, Any]] | None:
            items = pods(cluster, ns, "app=l40s")
            ok = len(items) == 4 and all(p["status"].get("phase") == "Running" for p in items)
            return items if ok else None

        running = wait_for("4 L40S pods Running", l40s_running)
        nodes = {p["spec"]["nodeName"] for p in running}
        assert len(nodes) == 4, "4 GPUs per pod on 4-GPU nodes: the scheduler must spread them one per node"
        assert all(n.startswith("gpu-l40s-") for n in nodes)

        def unschedulable() -> bool:
            items = pods(cluster, ns, "app=huge")
            conds = [
                c for p in items for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"
            ]
            return bool(conds) and conds[0]["status"] == "False" and conds[0]["reason"] == "Unschedulable"

        wait_for("the 16-GPU pod to be Unschedulable", unschedulable)
        assert pods(cluster, ns, "app=huge")[0]["status"]["phase"] == "Pending"
        # A fifth 4-GPU L40S pod cannot fit either: the scheduler counts GPUs, not just labels.
        cluster.kubectl("scale", "deployment/l40s", "-n", ns, "--replicas=5")
        wait_for(
            "the fifth L40S pod to be Pending",
            lambda: sum(p["status"].get("phase") == "Pending" for p in pods(cluster, ns, "app=l40s")) == 1,
        )


def test_deleting_an_owner_garbage_collects_its_children(cluster: Cluster) -> None:
    with cluster.namespace("gc") as ns:
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump(gpu_deployment(ns, "owned", 1, "NVIDIA-H100-80GB-HBM3", 2)),
        )
        wait_for("2 owned pods", lambda: len(pods(cluster, ns, "app=owned")) == 2)
        rs = json.loads(cluster.kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"]
        assert rs and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        cluster.kubectl("delete", "deployment", "owned", "-n", ns, "--cascade=background")
        wait_for(
            "ReplicaSet and pods to be collected",
            lambda: (
                not pods(cluster, ns, "app=owned")
                and not json.loads(cluster.kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"]
            ),
        )


def test_crd_applies_and_serves_custom_objects(cluster: Cluster) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.smoke.tokenfleet.io"},
        "spec": {
            "group": "smoke.tokenfleet.io",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.tokenfleet.io", "--timeout=30s")
    with cluster.namespace("crd") as ns:
        ok = {
            "apiVersion": "smoke.tokenfleet.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": ns},
            "spec": {"size": 2},
        }
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(ok))
        bad = {**ok, "metadata": {"name": "bad", "namespace": ns}, "spec": {"size": 0}}
        refused = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
        assert refused.returncode != 0 and "spec.size" in refused.stderr
    cluster.kubectl("delete", "crd", "widgets.smoke.tokenfleet.io")


PROBE_SERVER = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["GREETING"].encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], 8080), H).serve_forever()
"""

WHOAMI = """
import json, os, sys, time
from kubernetes import client, config
config.load_kube_config()
api = client.CoreV1Api()
try:
    api.list_namespaced_secret(sys.argv[1]); result = "allowed"
except client.rest.ApiException as err:
    result = str(err.status)
open(sys.argv[2], "w").write(result)
time.sleep(3600)
"""


def launched_pod(ns: str, name: str, command: list[str], probe: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "local",
        "command": command,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "hello from $(POD_IP)"},
        ],
    }
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"tokenfleet.io/component": "smoke"}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5},
    }


def test_launcher_runs_labelled_pods_as_processes_on_their_pod_ip(cluster: Cluster) -> None:
    with cluster.namespace("launch") as ns:
        pod = launched_pod(ns, "web", [sys.executable, "-c", PROBE_SERVER, "$(POD_IP)"], probe=True)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))

        def ready_ip() -> str | None:
            item = pods(cluster, ns, "tokenfleet.io/component=smoke")[0]
            conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            return item["status"].get("podIP") if conds.get("Ready") == "True" else None

        ip = wait_for("the launched pod to turn Ready", ready_ip)
        assert ip.startswith("127.")
        assert httpx.get(f"http://{ip}:8080/").text == f"hello from {ip}"
        cluster.kubectl("delete", "pod", "web", "-n", ns, "--wait=true", "--timeout=30s")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{ip}:8080/", timeout=2)


def test_launched_pods_talk_to_the_api_as_their_service_account(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "result"
    with cluster.namespace("sa") as ns:
        pod = launched_pod(ns, "whoami", [sys.executable, "-c", WHOAMI, ns, str(out)], probe=False)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
        result = wait_for("the pod to call the API", lambda: out.exists() and out.read_text())
        assert result == "403", "the default service account must not read Secrets"
        allowed = cluster.kubectl(
            "auth",
            "can-i",
            "list",
            "secrets",
            "-n",
            ns,
            f"--as=system:serviceaccount:{ns}:default",
            check=False,
        )
        assert allowed.stdout.strip() == "no"
