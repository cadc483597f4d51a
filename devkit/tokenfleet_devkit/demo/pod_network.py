"""Preflight checks of the loopback pod network the launcher runs pods on.

Launched pods bind their pod IP on this host, so the demo is only as sound as that network:
- another running local cluster with the same node pod CIDRs hands out the same addresses;
- a process left behind by a launcher keeps listening on an address the cluster may give to a new pod.
Either way a new pod's probes and requests reach a stranger's process (seen as 404s for the wrong
model). Both are found before the demo starts, and named in the error.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from tokenfleet_devkit.cluster import control_plane, topology
from tokenfleet_devkit.cluster import versions as v

_LISTEN = "0A"


def parse_listeners(proc_net_tcp: str) -> list[tuple[str, int]]:
    """(ip, port) of the IPv4 sockets in LISTEN state, from the text of /proc/net/tcp."""
    listeners = []
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        hex_ip, _, hex_port = fields[1].partition(":")
        ip = socket.inet_ntoa(struct.pack("<I", int(hex_ip, 16)))
        listeners.append((ip, int(hex_port, 16)))
    return listeners


def strays(
    listeners: Iterable[tuple[str, int]], pod_ips: set[str], node_cidrs: Iterable[str]
) -> list[tuple[str, int]]:
    """Listeners on an address of the cluster's node pod ranges that no pod of the cluster holds."""
    networks = [ipaddress.ip_network(c) for c in node_cidrs]
    return sorted(
        (ip, port)
        for ip, port in listeners
        if any(ipaddress.ip_address(ip) in n for n in networks) and ip not in pod_ips
    )


def _pod_ips(paths: control_plane.Paths) -> set[str]:
    out = control_plane.kubectl(paths, "get", "pods", "-A", "-o", "json")
    return {p["status"]["podIP"] for p in json.loads(out.stdout)["items"] if p.get("status", {}).get("podIP")}


def stray_listeners(paths: control_plane.Paths, proc_net_tcp: Path = Path("/proc/net/tcp")) -> list[str]:
    """ip:port of processes listening on pod addresses that belong to no pod of this cluster."""
    if not proc_net_tcp.exists():
        return []  # not Linux: nothing to check against
    listeners = parse_listeners(proc_net_tcp.read_text())  # before the pods: a newer pod is then listed
    found = strays(listeners, _pod_ips(paths), _pod_cidrs(paths))
    return [f"{ip}:{port}" for ip, port in found]


def _pod_cidrs(paths: control_plane.Paths) -> set[str]:
    proc = control_plane.kubectl(
        paths, "get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}", check=False
    )
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def clusters_sharing_pod_cidrs(paths: control_plane.Paths) -> dict[str, list[str]]:
    """Other running local clusters whose nodes hand out pod IPs from the same ranges as this one."""
    ours = _pod_cidrs(paths)
    shared: dict[str, list[str]] = {}
    for kubeconfig in sorted((v.cache_dir() / "clusters").glob("*/kubeconfig")):
        other = control_plane.Paths.default(kubeconfig.parent.name)
        if other.name == paths.name or not control_plane.is_running(other):
            continue
        overlap = sorted(ours & _pod_cidrs(other))
        if overlap:
            shared[other.name] = overlap
    return shared


def _slot(cidr: str) -> int:
    """Which /16 of the pod network a node CIDR lies in (127.64.x.x is slot 0)."""
    return int(cidr.split(".")[1]) - 64


def free_slot(used_cidrs: Iterable[str]) -> int:
    """The lowest /16 of the pod network that no running cluster's nodes use (slot 63 is kwok's own)."""
    used = {_slot(c) for c in used_cidrs}
    for slot in range(1, 63):
        if slot not in used:
            return slot
    raise RuntimeError("every slot of the loopback pod network is taken by running clusters")


def move_to_own_pod_network(paths: control_plane.Paths, shared: dict[str, list[str]]) -> str:
    """Re-create this (still empty) cluster's GPU nodes on a /16 no other running cluster uses.

    A node's podCIDR cannot change, so the nodes are deleted and added again; only done before any pod
    of the fleet exists. Returns the new pod network, for the output.
    """
    used: set[str] = set()
    for kubeconfig in sorted((v.cache_dir() / "clusters").glob("*/kubeconfig")):
        other = control_plane.Paths.default(kubeconfig.parent.name)
        if other.name != paths.name and control_plane.is_running(other):
            used |= _pod_cidrs(other)
    slot = free_slot(used | {c for cidrs in shared.values() for c in cidrs})
    nodes = topology.gpu_nodes(start=256 * slot)
    control_plane.kubectl(paths, "delete", "nodes", "-l", "type=kwok", "--wait=true", "--timeout=60s")
    control_plane.add_nodes(paths, nodes)
    control_plane.wait_nodes_ready(paths, len(nodes))
    return f"127.{64 + slot}.0.0/16"
