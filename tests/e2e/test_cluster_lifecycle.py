"""`cluster up` then `cluster down` on a cluster of its own: nothing left running, no port held."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tokenfleet_devkit.cluster import control_plane

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                pids.append(int(entry.name))
    return pids


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def test_up_then_down_leaves_no_process_and_no_port(cluster: object) -> None:
    # Depends on `cluster` only so that the build has happened once for the session.
    paths = control_plane.Paths.default("tokenfleet-lifecycle")
    control_plane.up(say=lambda line: None, paths=paths)
    try:
        server = urlparse(yaml.safe_load(paths.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
        assert server.hostname == "127.0.0.1" and port_open("127.0.0.1", server.port or 443)
        nodes = json.loads(control_plane.kubectl(paths, "get", "nodes", "-o", "json").stdout)["items"]
        assert len(nodes) == 8
        marker = str(paths.workdir / "clusters" / paths.name)
        assert processes_mentioning(marker), "the control plane should be running from its work dir"
    finally:
        control_plane.down(say=lambda line: None, paths=paths)
    assert processes_mentioning(marker) == []
    assert not port_open("127.0.0.1", server.port or 443)
    assert not control_plane.is_running(paths)
