"""Install tokenfleet into the local cluster the way a user would, and take it out again.

In order of preference: `helm install` of charts/tokenfleet (the launcher then runs the operator pod
as a real process under its own service account); `kubectl apply -f manifests/` (only on the demo's
own cluster: those manifests watch every namespace); `tokenfleet-operator` as a local process. The
chosen way is reported. Every wait is bounded and fails with the operator's log tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenfleet_devkit.cluster import control_plane

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "tokenfleet"
MANIFESTS = REPO / "manifests"
RELEASE = "tokenfleet"
OPERATOR_SELECTOR = "tokenfleet.io/component=operator"
MANIFESTS_NAMESPACE = "tokenfleet-system"
HELM = "helm"
KUBECTL_MANIFESTS = "kubectl apply -f manifests/"
LOCAL_PROCESS = "local process"
Say = Callable[[str], None]


class InstallError(RuntimeError):
    """tokenfleet could not be installed or did not come up in time; the message says what to look at."""


@dataclass
class Installation:
    method: str  # HELM, KUBECTL_MANIFESTS or LOCAL_PROCESS
    namespace: str  # where the operator runs
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


def free_port() -> int:
    """A port free on every loopback address: launched pods bind their own 127.x address or 0.0.0.0."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def kubectl_json(paths: control_plane.Paths, *args: str) -> Any:
    return json.loads(control_plane.kubectl(paths, *args, "-o", "json").stdout)


def _helm(paths: control_plane.Paths, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(paths.kubeconfig)}
    return subprocess.run(
        [str(paths.bin / "helm"), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def install_crds(paths: control_plane.Paths) -> None:
    """Apply the chart's CRDs first: Helm never upgrades CRDs, and a shared cluster may hold older ones."""
    control_plane.kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    for name in ("inferencedeployments.tokenfleet.io", "kopfpeerings.kopf.dev"):
        control_plane.kubectl(paths, "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_log_tail(paths: control_plane.Paths, namespace: str, selector: str, lines: int = 15) -> str:
    """The launcher's log of the first pod matching `selector`, for error messages."""
    try:
        pods = kubectl_json(paths, "get", "pods", "-n", namespace, "-l", selector)["items"]
    except (control_plane.ClusterError, ValueError):
        return "(pods could not be listed)"
    for pod in pods:
        log = paths.state / "pods" / f"{namespace}_{pod['metadata']['name']}.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            return f"{log}:\n" + "\n".join(tail)
    return f"(no pod log yet for {selector} in {namespace})"


def wait_pod_ready(
    paths: control_plane.Paths, namespace: str, selector: str, what: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(control_plane.ClusterError, ValueError):
            pods = kubectl_json(paths, "get", "pods", "-n", namespace, "-l", selector)["items"]
            for pod in pods:
                if _is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                    return dict(pod)
        time.sleep(1.0)
    raise InstallError(
        f"{what} was not Ready within {timeout:.0f}s\n{pod_log_tail(paths, namespace, selector)}"
    )


def _install_helm(paths: control_plane.Paths, namespace: str, say: Say) -> Installation:
    port = free_port()
    values = {
        # Only this namespace: a shared cluster may run other operators.
        "watchNamespaces": f"{{{namespace}}}",
        "operator.metricsPort": str(port),
    }
    flags = [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
    say(f"helm install {RELEASE} charts/tokenfleet -n {namespace}")
    proc = _helm(paths, "install", RELEASE, str(CHART), "-n", namespace, "--skip-crds", *flags)
    if proc.returncode != 0:
        raise InstallError(f"helm install failed: {proc.stderr.strip()[-1500:]}")
    return Installation(HELM, namespace)


def _install_manifests(paths: control_plane.Paths, say: Say) -> Installation:
    say("kubectl apply -f manifests/")
    control_plane.kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", str(MANIFESTS))
    return Installation(KUBECTL_MANIFESTS, MANIFESTS_NAMESPACE)


def _install_local(paths: control_plane.Paths, namespace: str, log_dir: Path, say: Say) -> Installation:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "operator.log"
    command = [
        str(Path(sys.executable).parent / "tokenfleet-operator"),
        f"--namespace={namespace}",
        "--standalone",
        f"--kubeconfig={paths.kubeconfig}",
        f"--metrics-port={free_port()}",
    ]
    say("running tokenfleet-operator as a local process (admin kubeconfig)")
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return Installation(LOCAL_PROCESS, namespace, process, log_path)


def install(
    paths: control_plane.Paths, namespace: str, own_cluster: bool, log_dir: Path, say: Say, timeout: float
) -> Installation:
    """Install and wait for the operator; falls back down the list when a way does not work."""
    install_crds(paths)
    attempts: list[str] = []
    try:
        installation = _install_helm(paths, namespace, say)
        wait_pod_ready(paths, namespace, OPERATOR_SELECTOR, "the operator pod (helm)", timeout)
        return installation
    except (InstallError, control_plane.ClusterError, subprocess.TimeoutExpired) as err:
        attempts.append(f"helm: {err}")
        say(f"helm install did not work ({str(err).splitlines()[0]}); falling back")
        _helm(paths, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")
    if own_cluster:
        try:
            installation = _install_manifests(paths, say)
            wait_pod_ready(
                paths, MANIFESTS_NAMESPACE, OPERATOR_SELECTOR, "the operator pod (manifests)", timeout
            )
            return installation
        except (InstallError, control_plane.ClusterError) as err:
            attempts.append(f"manifests: {err}")
            say(f"kubectl apply -f manifests/ did not work ({str(err).splitlines()[0]}); falling back")
            control_plane.kubectl(paths, "delete", "-f", str(MANIFESTS), "--wait=false", check=False)
    installation = _install_local(paths, namespace, log_dir, say)
    time.sleep(2.0)
    if installation.process is not None and installation.process.poll() is not None:
        attempts.append(f"local process exited with {installation.process.returncode}")
        raise InstallError("could not run the operator:\n" + "\n".join(attempts))
    return installation


def uninstall(paths: control_plane.Paths, installation: Installation, say: Say) -> None:
    """Remove what `install` added (best effort, bounded); the caller removes the namespace."""
    if installation.method == HELM:
        proc = _helm(paths, "uninstall", RELEASE, "-n", installation.namespace, "--timeout", "60s")
        if proc.returncode != 0 and "not found" not in proc.stderr:
            say(f"helm uninstall: {proc.stderr.strip()[-300:]}")
    elif installation.method == KUBECTL_MANIFESTS:
        control_plane.kubectl(paths, "delete", "-f", str(MANIFESTS), "--wait=false", check=False)
    if installation.process is not None and installation.process.poll() is None:
        installation.process.terminate()
        try:
            installation.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            installation.process.kill()
            installation.process.wait(timeout=5)
