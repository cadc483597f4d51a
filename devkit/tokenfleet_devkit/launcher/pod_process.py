"""Turn a Pod into the local process that stands in for its container (pure; no I/O).

Follows the kubelet's rules where they matter here: `command` replaces the entrypoint, `args`
follow it, `$(VAR)` references expand from the container's env (`$$` escapes), env values may
come from the downward API, and probes resolve named ports through the container's ports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SecretLookup = Callable[[str, str, str], str | None]  # (kind, name, key) -> value

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class PodSpecError(ValueError):
    """The pod cannot be run as a local process; the message says which field is the problem."""


@dataclass(frozen=True)
class HttpProbe:
    host: str
    port: int
    path: str
    period_seconds: float = 1.0
    failure_threshold: int = 3
    initial_delay_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class ProcessSpec:
    pod_key: str  # namespace/name
    uid: str
    container: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    readiness: HttpProbe | None
    liveness: HttpProbe | None
    grace_seconds: float
    restart_policy: str
    service_account: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # local path -> content, written before start


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` as the kubelet does: unknown references stay verbatim, `$$` is a literal `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(sub, text)


def _field_ref(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    raise PodSpecError(f"env fieldRef.fieldPath {path!r} is not supported by the local launcher")


def container_env(pod: dict[str, Any], container: dict[str, Any], lookup: SecretLookup) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env", []) or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        source = item.get("valueFrom", {})
        if "fieldRef" in source:
            env[name] = _field_ref(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source["configMapKeyRef"]
            value = lookup(kind, ref["name"], ref["key"])
            if value is None and not ref.get("optional", False):
                raise PodSpecError(f"env {name}: {kind} {ref['name']}/{ref['key']} not found")
            if value is not None:
                env[name] = value
        else:
            env[name] = ""
    return env


def _probe(pod: dict[str, Any], container: dict[str, Any], key: str) -> HttpProbe | None:
    probe = container.get(key)
    if not probe:
        return None
    http = probe.get("httpGet")
    if not http:
        raise PodSpecError(f"containers[{container['name']}].{key}: only httpGet probes are run locally")
    port = http["port"]
    if isinstance(port, str) and not port.isdigit():
        named = {p.get("name"): p["containerPort"] for p in container.get("ports", []) or []}
        if port not in named:
            raise PodSpecError(f"containers[{container['name']}].{key}.httpGet.port: no port named {port!r}")
        port = named[port]
    return HttpProbe(
        host=http.get("host") or pod.get("status", {}).get("podIP", "127.0.0.1"),
        port=int(port),
        path=http.get("path", "/"),
        period_seconds=float(probe.get("periodSeconds", 10)),
        failure_threshold=int(probe.get("failureThreshold", 3)),
        initial_delay_seconds=float(probe.get("initialDelaySeconds", 0)),
    )


def secret_mounts(
    pod: dict[str, Any], container: dict[str, Any], lookup: SecretLookup, volume_root: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Secret volumes as local files: (mountPath -> local dir, local file -> content).

    A process has no mount namespace here, so each secret volume becomes a folder under
    `volume_root` and arguments naming the mount path are pointed at it.
    """
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    dirs: dict[str, str] = {}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None:
            continue
        items = secret.get("items")
        if not items:
            raise PodSpecError(f"volumes[{mount['name']}].secret.items: the launcher needs the keys listed")
        local = f"{volume_root}/{mount['name']}"
        for item in items:
            value = lookup("secret", secret["secretName"], item["key"])
            if value is None:
                raise PodSpecError(
                    f"volumes[{mount['name']}]: secret {secret['secretName']}/{item['key']} not found"
                )
            files[f"{local}/{item['path']}"] = value
        dirs[mount["mountPath"].rstrip("/")] = local
    return dirs, files


def _point_at(arg: str, dirs: Mapping[str, str]) -> str:
    for mount_path, local in dirs.items():
        if arg == mount_path or arg.startswith(mount_path + "/"):
            return local + arg[len(mount_path) :]
    return arg


def process_spec(
    pod: dict[str, Any], lookup: SecretLookup, base_env: Mapping[str, str], volume_root: str = "/nonexistent"
) -> ProcessSpec:
    """The process for the pod's first container (the fleet's pods have one)."""
    meta, spec = pod["metadata"], pod["spec"]
    containers = spec.get("containers") or []
    if not containers:
        raise PodSpecError("spec.containers is empty")
    container = containers[0]
    command = list(container.get("command") or [])
    if not command:
        raise PodSpecError(f"containers[{container['name']}].command: the launcher needs an explicit command")
    env = container_env(pod, container, lookup)
    dirs, files = secret_mounts(pod, container, lookup, volume_root)
    argv = tuple(_point_at(expand(a, env), dirs) for a in [*command, *(container.get("args") or [])])
    return ProcessSpec(
        pod_key=f"{meta['namespace']}/{meta['name']}",
        uid=meta["uid"],
        container=container["name"],
        argv=argv,
        env={**base_env, **env},
        readiness=_probe(pod, container, "readinessProbe"),
        liveness=_probe(pod, container, "livenessProbe"),
        grace_seconds=float(spec.get("terminationGracePeriodSeconds", 30)),
        restart_policy=spec.get("restartPolicy", "Always"),
        service_account=spec.get("serviceAccountName", "default"),
        annotations=dict(meta.get("annotations") or {}),
        files=files,
    )


def ready_status(
    pod_spec: ProcessSpec, ready: bool, running: bool, restarts: int, now: str, exit_code: int | None = None
) -> dict[str, Any]:
    """The status patch that reflects the process into the pod, as a kubelet would report it."""
    flag = "True" if ready else "False"
    if running:
        state: dict[str, Any] = {"running": {"startedAt": now}}
    elif exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "finishedAt": now,
                "reason": "Completed" if exit_code == 0 else "Error",
            }
        }
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    return {
        "status": {
            "conditions": [
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": pod_spec.container,
                    "ready": ready,
                    "started": running,
                    "restartCount": restarts,
                    "image": "local-process",
                    "imageID": "",
                    "state": state,
                }
            ],
        }
    }
