"""`tokenfleet cluster up|down|status|kubeconfig`: kwokctl's binary runtime fed with our own builds.

kwokctl starts etcd, kube-apiserver (RBAC and admission on, service accounts working),
kube-controller-manager, kube-scheduler and kwok-controller on 127.0.0.1 as plain processes and
writes a kubeconfig. Every binary comes from `build.py`; nothing is downloaded, so it runs offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from tokenfleet_devkit.cluster import build, topology
from tokenfleet_devkit.cluster import versions as v
from tokenfleet_devkit.launcher import daemon

CLUSTER_NAME = "tokenfleet"
Say = Callable[[str], None]

# kwok's own stage definitions, read from its module source (present once kwok is built).
_KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


class ClusterError(RuntimeError):
    """The control plane could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class Paths:
    name: str
    state: Path
    kubeconfig: Path
    kwok_config: Path
    workdir: Path
    bin: Path

    @classmethod
    def default(cls, name: str = CLUSTER_NAME) -> Paths:
        """Each named cluster has its own state; the test suite uses its own name."""
        state = v.cache_dir() / "clusters" / name
        return cls(
            name=name,
            state=state,
            kubeconfig=state / "kubeconfig",
            kwok_config=state / "kwok.yaml",
            workdir=v.cache_dir() / "kwok",
            bin=v.bin_dir(),
        )


def _env(paths: Paths) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KWOK_WORKDIR=str(paths.workdir),
        KWOK_KUBE_VERSION=v.KUBERNETES,
        KWOK_RUNTIME="binary",
        KWOK_ETCD_BINARY=str(paths.bin / "etcd"),
        KWOK_KUBE_APISERVER_BINARY=str(paths.bin / "kube-apiserver"),
        KWOK_KUBE_CONTROLLER_MANAGER_BINARY=str(paths.bin / "kube-controller-manager"),
        KWOK_KUBE_SCHEDULER_BINARY=str(paths.bin / "kube-scheduler"),
        KWOK_CONTROLLER_BINARY=str(paths.bin / "kwok"),
        KWOK_KUBECTL_BINARY=str(paths.bin / "kubectl"),
        PATH=f"{paths.bin}{os.pathsep}{env.get('PATH', '')}",
        # Offline guard: should kwokctl ever try to download a binary, fail locally at once.
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def _binary_flags(paths: Paths) -> list[str]:
    """Name every binary explicitly so kwokctl never reaches for a download."""
    names = {
        "etcd": "etcd",
        "kube-apiserver": "kube-apiserver",
        "kube-controller-manager": "kube-controller-manager",
        "kube-scheduler": "kube-scheduler",
        "kwok-controller": "kwok",
    }
    return [arg for flag, name in names.items() for arg in (f"--{flag}-binary", str(paths.bin / name))]


def _kwok_module_dir() -> Path:
    out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / "sigs.k8s.io" / f"kwok@{v.KWOK}"


def _kwok_stages() -> list[dict[str, object]]:
    root = _kwok_module_dir()
    missing = [f for f in _KWOK_STAGE_FILES if not (root / f).exists()]
    if missing:
        subprocess.run(
            ["go", "mod", "download", f"sigs.k8s.io/kwok@{v.KWOK}"],
            cwd=v.cache_dir(),
            check=False,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
            capture_output=True,
        )
    return [yaml.safe_load((root / f).read_text()) for f in _KWOK_STAGE_FILES]


def _kwokctl(paths: Paths, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(paths.bin / "kwokctl"), "--name", paths.name, *args],
        env=_env(paths),
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise ClusterError(f"kwokctl {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def kubectl(
    paths: Paths, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(paths.bin / "kubectl"), "--kubeconfig", str(paths.kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        env=_env(paths),
    )
    if check and proc.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def is_running(paths: Paths) -> bool:
    if not paths.kubeconfig.exists() or not (paths.bin / "kubectl").exists():
        return False
    return kubectl(paths, "get", "--raw", "/readyz", check=False).returncode == 0


def up(say: Say = print, paths: Paths | None = None, launcher: bool = True) -> Paths:
    """Build what is missing, start the control plane, add the GPU nodes and the pod launcher."""
    paths = paths or Paths.default()
    build.ensure_built(say)
    if is_running(paths):
        say(f"cluster already running; kubeconfig: {paths.kubeconfig}")
        if launcher and not daemon.is_running(paths.state):
            daemon.start(paths.kubeconfig, paths.state)
        return paths
    started = time.monotonic()
    paths.state.mkdir(parents=True, exist_ok=True)
    docs = topology.config_documents(_kwok_stages())
    paths.kwok_config.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    _kwokctl(paths, "delete", "cluster", check=False)  # leftovers of a crashed run
    say(f"starting etcd, kube-apiserver {v.KUBERNETES}, controller-manager, scheduler, kwok")
    _kwokctl(
        paths,
        "create",
        "cluster",
        "--runtime",
        "binary",
        "--kube-authorization",
        "--kube-admission",
        *_binary_flags(paths),
        "--config",
        str(paths.kwok_config),
        "--kubeconfig",
        str(paths.kubeconfig),
        "--wait",
        "90s",
        "--timeout",
        "120s",
        "--quiet-pull",
    )
    say(f"control plane ready in {time.monotonic() - started:.1f}s; adding fake GPU nodes")
    add_nodes(paths, topology.gpu_nodes(start=topology.NODES_PER_SLOT * topology.cluster_slot(paths.name)))
    wait_nodes_ready(paths, len(topology.gpu_nodes()))
    if launcher:
        pid = daemon.start(paths.kubeconfig, paths.state)
        say(f"pod launcher running (pid {pid}); pod logs under {paths.state / 'pods'}")
    say(f"cluster up in {time.monotonic() - started:.1f}s; kubeconfig: {paths.kubeconfig}")
    return paths


def add_nodes(paths: Paths, nodes: list[dict[str, object]]) -> None:
    body = yaml.safe_dump_all(nodes, sort_keys=False)
    kubectl(paths, "apply", "--server-side", "--field-manager", "tokenfleet-cluster", "-f", "-", input=body)


def wait_nodes_ready(paths: Paths, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl(paths, "get", "nodes", "-l", "type=kwok", "-o", "json", check=False)
        if out.returncode == 0:
            ready = sum(
                1
                for n in json.loads(out.stdout)["items"]
                for c in n["status"].get("conditions", [])
                if c["type"] == "Ready" and c["status"] == "True"
            )
            if ready >= count:
                return
        time.sleep(0.5)
    raise ClusterError(f"fake GPU nodes not Ready within {timeout:.0f}s")


def down(say: Say = print, paths: Paths | None = None) -> None:
    paths = paths or Paths.default()
    if not (paths.bin / "kwokctl").exists():
        say("nothing to stop: the control plane was never built")
        return
    port = _server_port(paths)
    daemon.stop(paths.kubeconfig, paths.state)
    _kwokctl(paths, "delete", "cluster", check=False)
    paths.kubeconfig.unlink(missing_ok=True)
    if port and not _wait_port_closed(port, timeout=15.0):
        raise ClusterError(f"kube-apiserver still listens on 127.0.0.1:{port} after `cluster down`")
    say("cluster down")


def _server_port(paths: Paths) -> int | None:
    if not paths.kubeconfig.exists():
        return None
    server = yaml.safe_load(paths.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return urlparse(server).port


def _wait_port_closed(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.2)
    return False


def status(paths: Paths | None = None) -> str:
    paths = paths or Paths.default()
    if not is_running(paths):
        return "cluster: not running"
    nodes = kubectl(paths, "get", "nodes", "-L", topology.GPU_PRODUCT_LABEL, "-o", "wide").stdout
    version = kubectl(paths, "version", "-o", "json").stdout
    server = json.loads(version).get("serverVersion", {}).get("gitVersion", "?")
    return f"cluster: running (Kubernetes {server})\nkubeconfig: {paths.kubeconfig}\n{nodes}"


def _kwok_cluster_dir(paths: Paths) -> Path:
    return paths.workdir / "clusters" / paths.name


def _components(paths: Paths) -> list[dict[str, Any]]:
    """kwokctl's saved component command lines (the first document of its kwok.yaml)."""
    config = next(yaml.safe_load_all((_kwok_cluster_dir(paths) / "kwok.yaml").read_text()))
    return list(config["components"])


def _pid_of(paths: Paths, name: str) -> int:
    return int((_kwok_cluster_dir(paths) / "pids" / f"{name}.pid").read_text().strip())


def _launch(paths: Paths, component: dict[str, Any]) -> int:
    """Start one component as kwokctl does: detached, appending to its log, its pid in its pid file."""
    cluster_dir = _kwok_cluster_dir(paths)
    log = cluster_dir / "logs" / f"{component['name']}.log"
    # Through a shell that exits at once, so the process is nobody's child: it outlives the caller,
    # as kwokctl's own do, and `cluster down` never waits on an unreaped zombie.
    shell = ["/bin/sh", "-c", '"$@" >>"$0" 2>&1 </dev/null & echo $!', str(log)]
    launched = subprocess.run(
        [*shell, component["binary"], *component.get("args", [])],
        cwd=component.get("workDir") or cluster_dir,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    pid = int(launched.stdout.strip())
    (cluster_dir / "pids" / f"{component['name']}.pid").write_text(str(pid))
    return pid


def restart_apiserver(paths: Paths, down_seconds: float = 0.0, timeout: float = 90.0) -> int:
    """Stop kube-apiserver, keep it down `down_seconds`, start it again with kwokctl's command line.

    etcd, the controllers, the scheduler and kwok keep running, as when a real control plane's API
    server restarts, so every client must reconnect its watches. Controllers that gave up their
    leader lease while it was down exit, as they do in a real cluster; like a kubelet restarting
    static pods, they are started again. Returns the API server's new pid.
    """
    component = next(c for c in _components(paths) if c["name"] == "kube-apiserver")
    old_pid = _pid_of(paths, "kube-apiserver")
    # SIGTERM first; the server then waits on open watches for a long while, so it is killed after a
    # short grace period (its clients see the same dropped connections either way).
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, sig)
        if _wait_pid_gone(old_pid, timeout=grace):
            break
    port = int(component["ports"][0]["port"])
    if not _wait_pid_gone(old_pid, timeout=0.0) or not _wait_port_closed(port, timeout=15.0):
        raise ClusterError(f"kube-apiserver (pid {old_pid}) did not stop")
    time.sleep(down_seconds)
    new_pid = _launch(paths, component)
    deadline = time.monotonic() + timeout
    while not is_running(paths):
        if time.monotonic() > deadline or _wait_pid_gone(new_pid, timeout=0.0):
            raise ClusterError(f"kube-apiserver did not come back; see {_kwok_cluster_dir(paths)}/logs")
        time.sleep(0.2)
    restart_exited_components(paths)
    return new_pid


def restart_exited_components(paths: Paths, settle_seconds: float = 3.0) -> list[str]:
    """Start again every control-plane component whose process has exited; returns their names.

    Waits `settle_seconds` first: a controller that lost its lease exits a moment after the API
    server is back."""
    time.sleep(settle_seconds)
    restarted = []
    for component in _components(paths):
        if _wait_pid_gone(_pid_of(paths, component["name"]), timeout=0.0):
            _launch(paths, component)
            restarted.append(component["name"])
    return restarted


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
