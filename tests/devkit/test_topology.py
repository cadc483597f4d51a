from __future__ import annotations

import ipaddress

import pytest

from tokenfleet_devkit.cluster import topology

pytestmark = pytest.mark.unit


def test_default_fleet_has_two_gpu_products_with_capacity() -> None:
    nodes = topology.gpu_nodes()
    products = {n["metadata"]["labels"][topology.GPU_PRODUCT_LABEL] for n in nodes}
    assert products == {"NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S"}
    by_product = {
        p: [n for n in nodes if n["metadata"]["labels"][topology.GPU_PRODUCT_LABEL] == p] for p in products
    }
    assert len(by_product["NVIDIA-H100-80GB-HBM3"]) == 4
    assert {n["status"]["capacity"]["nvidia.com/gpu"] for n in by_product["NVIDIA-H100-80GB-HBM3"]} == {"8"}
    assert {n["status"]["allocatable"]["nvidia.com/gpu"] for n in by_product["NVIDIA-L40S"]} == {"4"}


def test_every_node_is_kwok_managed_and_has_a_distinct_loopback_pod_cidr() -> None:
    nodes = topology.gpu_nodes()
    cidrs = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]
    assert len(set(cidrs)) == len(nodes)
    assert all(c.subnet_of(ipaddress.ip_network("127.0.0.0/8")) for c in cidrs)
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in nodes)


def test_pod_cidr_indexes_past_256_nodes_stay_distinct() -> None:
    assert topology.pod_cidr(0) == "127.64.0.0/24"
    assert topology.pod_cidr(256) == "127.65.0.0/24"
    assert len({topology.pod_cidr(i) for i in range(1000)}) == 1000


def test_kwok_pod_stages_exclude_launcher_pods_but_node_stages_are_untouched() -> None:
    pod_stage = {"spec": {"resourceRef": {"kind": "Pod"}, "selector": {"matchExpressions": []}}}
    node_stage = {"spec": {"resourceRef": {"kind": "Node"}, "selector": {"matchExpressions": []}}}
    docs = topology.config_documents([pod_stage, node_stage])
    exprs = docs[-2]["spec"]["selector"]["matchExpressions"]
    assert exprs == [
        {"key": f'.metadata.labels.["{topology.LOCAL_PROCESS_LABEL}"]', "operator": "DoesNotExist"}
    ]
    assert docs[-1]["spec"]["selector"]["matchExpressions"] == []
    ours = docs[1]
    assert ours["kind"] == "Stage"
    assert {"key": f'.metadata.labels.["{topology.LOCAL_PROCESS_LABEL}"]', "operator": "Exists"} in ours[
        "spec"
    ]["selector"]["matchExpressions"]
    assert "type: Ready, reason: ProcessStarting" in ours["spec"]["next"]["statusTemplate"]


def test_clusters_side_by_side_get_disjoint_pod_networks() -> None:
    names = ["tokenfleet", "tokenfleet-test", "tokenfleet-demo", "tokenfleet-demo-e2e", "someone-else"]
    ranges = []
    for name in names:
        start = topology.NODES_PER_SLOT * topology.cluster_slot(name)
        nodes = topology.gpu_nodes(start=start)
        ranges.append({n["spec"]["podCIDR"] for n in nodes})
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert not a & b
    last = topology.pod_cidr(topology.NODES_PER_SLOT * 16 - 1)
    assert ipaddress.ip_network(last).subnet_of(ipaddress.ip_network(topology.POD_NETWORK))
