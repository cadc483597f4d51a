"""The CRD on a real API server: invalid resources are rejected naming the field; a valid one is defaulted,
listed with its printer columns, explained, and scaled through the scale subresource."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.operator.kube_helpers import wait_for

pytestmark = pytest.mark.e2e


VALID: dict[str, Any] = {
    "apiVersion": "tokenfleet.io/v1alpha1",
    "kind": "InferenceDeployment",
    "metadata": {"name": "chat"},
    "spec": {
        "model": {"name": "chat", "uri": "pvc://models/llama-3-8b", "dtype": "bfloat16", "maxModelLen": 8192},
        "engine": {"backend": "sim", "maxNumSeqs": 256, "maxBatchedTokens": 8192, "blockSize": 16},
        "accelerators": [
            {
                "name": "h100",
                "resourceName": "nvidia.com/gpu",
                "count": 1,
                "hourlyCost": 4.0,
                "maxReplicas": 16,
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            },
            {"name": "l40s", "hourlyCost": 1.5, "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}},
        ],
        "autoscaling": {
            "mode": "builtin",
            "minReplicas": 0,
            "maxReplicas": 32,
            "targets": {"queueDepthPerReplica": 8, "kvCacheUtilization": 0.8, "ttftP95Seconds": 1.0},
            "budget": {"maxHourlyCost": 100},
            "scaleUp": {"stabilizationSeconds": 0, "maxStep": 4},
            "scaleDown": {"stabilizationSeconds": 300, "maxStep": 1},
            "scaleToZeroAfterSeconds": 600,
            "metrics": {"source": "direct", "intervalSeconds": 5},
        },
        "routing": {"strategy": "least-load", "replicas": 2, "sessionHeader": "x-session-id"},
    },
}

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()

# (case, mutations, text the API server's message must contain: the field)
INVALID: list[tuple[str, list[Mutation], str]] = [
    ("no-accelerators", [_set("spec.accelerators", [])], "spec.accelerators"),
    (
        "duplicate-accelerator-names",
        [_set("spec.accelerators.1.name", "h100")],
        "spec.accelerators",
    ),
    (
        "min-over-max",
        [
            _set("spec.autoscaling.minReplicas", 5),
            _set("spec.autoscaling.maxReplicas", 2),
            _set("spec.autoscaling.scaleToZeroAfterSeconds", _DELETE),
        ],
        "spec.autoscaling.minReplicas",
    ),
    ("max-replicas-zero", [_set("spec.autoscaling.maxReplicas", 0)], "spec.autoscaling.maxReplicas"),
    (
        "unknown-scheduling-policy",
        [_set("spec.engine.schedulingPolicy", "lifo")],
        "spec.engine.schedulingPolicy",
    ),
    (
        "decode-step-target-zero",
        [_set("spec.engine.decodeStepTargetMs", 0)],
        "spec.engine.decodeStepTargetMs",
    ),
    (
        "declared-throughput-zero",
        [_set("spec.accelerators.0.tokensPerSecond", 0)],
        "spec.accelerators[0].tokensPerSecond",
    ),
    ("unknown-mode", [_set("spec.autoscaling.mode", "auto")], "spec.autoscaling.mode"),
    (
        "prometheus-without-url",
        [_set("spec.autoscaling.metrics.source", "prometheus")],
        "spec.autoscaling.metrics.url",
    ),
    (
        "prometheus-url-not-http",
        [
            _set("spec.autoscaling.metrics.source", "prometheus"),
            _set("spec.autoscaling.metrics.url", "prom:9090"),
        ],
        "spec.autoscaling.metrics.url",
    ),
    (
        "kv-target-above-one",
        [_set("spec.autoscaling.targets.kvCacheUtilization", 1.5)],
        "spec.autoscaling.targets.kvCacheUtilization",
    ),
    (
        "queue-target-zero",
        [_set("spec.autoscaling.targets.queueDepthPerReplica", 0)],
        "spec.autoscaling.targets.queueDepthPerReplica",
    ),
    ("negative-hourly-cost", [_set("spec.accelerators.0.hourlyCost", -1)], "spec.accelerators[0].hourlyCost"),
    (
        "scale-to-zero-with-min-replicas",
        [_set("spec.autoscaling.minReplicas", 1)],
        "spec.autoscaling.scaleToZeroAfterSeconds",
    ),
    (
        "zero-budget",
        [_set("spec.autoscaling.budget.maxHourlyCost", 0)],
        "spec.autoscaling.budget.maxHourlyCost",
    ),
    (
        "budget-below-min-replicas",
        [
            _set("spec.autoscaling.minReplicas", 2),
            _set("spec.autoscaling.scaleToZeroAfterSeconds", _DELETE),
            _set("spec.autoscaling.budget.maxHourlyCost", 2),
        ],
        "spec.autoscaling.budget.maxHourlyCost",
    ),
    ("unknown-routing-strategy", [_set("spec.routing.strategy", "fastest")], "spec.routing.strategy"),
    ("block-size-not-allowed", [_set("spec.engine.blockSize", 12)], "spec.engine.blockSize"),
    (
        "batched-tokens-below-seqs",
        [_set("spec.engine.maxBatchedTokens", 64)],
        "spec.engine.maxBatchedTokens",
    ),
    ("missing-model-uri", [_set("spec.model.uri", _DELETE)], "spec.model.uri"),
    ("model-uri-without-scheme", [_set("spec.model.uri", "llama.bin")], "spec.model.uri"),
    ("variant-name-not-dns", [_set("spec.accelerators.0.name", "H100_X")], "spec.accelerators[0].name"),
    (
        "zero-interval",
        [_set("spec.autoscaling.metrics.intervalSeconds", 0)],
        "spec.autoscaling.metrics.intervalSeconds",
    ),
    ("zero-max-step", [_set("spec.autoscaling.scaleUp.maxStep", 0)], "spec.autoscaling.scaleUp.maxStep"),
    (
        "replicas-over-max",
        [_set("spec.autoscaling.mode", "off"), _set("spec.replicas", 100)],
        "spec.replicas",
    ),
    ("unknown-dtype", [_set("spec.model.dtype", "int4")], "spec.model.dtype"),
    ("unknown-field", [_set("spec.autoscalling", {"minReplicas": 1})], "autoscalling"),
    ("name-too-long", [_set("metadata.name", "a" * 45)], "metadata.name"),
]


@pytest.fixture(scope="module")
def namespace(crd: Cluster) -> Iterator[str]:
    with crd.namespace("infdep") as ns:
        yield ns


def test_at_least_fifteen_distinct_invalid_cases() -> None:
    assert len({case for case, _, _ in INVALID}) == len(INVALID) >= 15


@pytest.mark.parametrize(("case", "mutations", "field"), INVALID, ids=[c for c, _, _ in INVALID])
def test_invalid_resource_is_rejected_naming_the_field(
    cluster: Cluster, namespace: str, case: str, mutations: list[Mutation], field: str
) -> None:
    obj = copy.deepcopy(VALID)
    obj["metadata"]["name"] = f"bad-{case}"[:40]
    for mutate in mutations:
        mutate(obj)
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert proc.returncode != 0, f"{case} was accepted"
    assert field in proc.stderr, proc.stderr


def test_valid_resource_is_defaulted_listed_explained_and_scaled(cluster: Cluster, namespace: str) -> None:
    minimal = {
        "apiVersion": "tokenfleet.io/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": "mini"},
        "spec": {
            "model": {"name": "mini", "uri": "pvc://m/x"},
            "accelerators": [{"name": "h100", "hourlyCost": 4}],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(VALID))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(minimal))
    got = json.loads(cluster.kubectl("get", "infdep", "mini", "-n", namespace, "-o", "json").stdout)["spec"]
    assert (
        got["autoscaling"]["mode"] == "builtin"
        and got["autoscaling"]["scaleDown"]["stabilizationSeconds"] == 300
    )
    assert got["engine"]["blockSize"] == 16 and got["accelerators"][0]["resourceName"] == "nvidia.com/gpu"
    assert got["routing"]["strategy"] == "least-load"

    header = cluster.kubectl("get", "infdep", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "DESIRED", "QUEUE", "KV%", "$/MTOK", "AGE"]
    assert "chat" in cluster.kubectl("get", "tokenfleet", "-n", namespace).stdout  # the category

    def explained() -> str | None:
        proc = cluster.kubectl("explain", "inferencedeployments.spec.autoscaling", check=False)
        return proc.stdout if "How the operator sizes the fleet" in proc.stdout else None

    assert "scaleToZeroAfterSeconds" in wait_for("kubectl explain", explained)

    status = {"status": {"replicas": 1, "selector": "tokenfleet.io/deployment=mini"}}
    cluster.kubectl(
        "patch",
        "infdep",
        "mini",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    cluster.kubectl("scale", "infdep/mini", "-n", namespace, "--replicas=3")
    scaled = json.loads(cluster.kubectl("get", "infdep", "mini", "-n", namespace, "-o", "json").stdout)
    assert scaled["spec"]["replicas"] == 3
    path = f"/apis/tokenfleet.io/v1alpha1/namespaces/{namespace}/inferencedeployments/mini/scale"
    scale = json.loads(cluster.kubectl("get", "--raw", path).stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["selector"] == "tokenfleet.io/deployment=mini"
