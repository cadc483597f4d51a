"""Pure builders for the objects an InferenceDeployment owns, as plain dicts ready for server-side apply.

Per fleet `<name>`: a worker Deployment `<name>-worker-<variant>` per accelerator variant, a headless
Service `<name>-workers` over all workers (Prometheus and the operator scrape through it), and a router
Deployment + Service `<name>-router`, whose ServiceAccount `<name>-router` may list and watch pods.
Every object carries the owner reference, so deleting the resource deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenfleet_operator.child_meta import (
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    Owner,
    container_security,
    http_probe,
    object_metadata,
    pod_ip_env,
    pod_security,
    router_name,
    selector_string,
    worker_deployment_name,
    worker_selector,
    workers_service_name,
)
from tokenfleet_operator.resource import AcceleratorSpec, InferenceDeploymentSpec
from tokenfleet_operator.settings import ROUTER_PORT, WORKER_PORT, OperatorSettings

MODEL_MOUNT = "/models"
API_KEYS_DIR = "/etc/tokenfleet/api-keys"
DRAIN_MARGIN_SECONDS = 15  # beyond the drain timeout: time to close the listener and exit

Manifest = dict[str, Any]


def model_location(uri: str) -> tuple[str, dict[str, Any] | None]:
    """The path a worker loads the model from, and the volume that provides it (None: no volume).

    pvc://claim/sub/dir mounts the claim read-only; file:///path is a path on the node (development
    fleets run workers as local processes); any other scheme is passed to the worker as is.
    """
    scheme, _, rest = uri.partition("://")
    if scheme == "pvc":
        claim, _, sub = rest.partition("/")
        volume = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return f"{MODEL_MOUNT}/{sub}".rstrip("/"), volume
    if scheme == "file":
        return rest, None
    return uri, None


def worker_args(spec: InferenceDeploymentSpec, acc: AcceleratorSpec) -> list[str]:
    model_path, _ = model_location(spec.model.uri)
    engine = spec.engine
    options: list[tuple[str, object]] = [
        ("--host", "$(POD_IP)"),
        ("--port", WORKER_PORT),
        ("--model", model_path),
        ("--served-model-name", spec.model.name),
        ("--backend", engine.backend),
        ("--device", acc.device),
        ("--dtype", spec.model.dtype),
        ("--max-num-seqs", engine.max_num_seqs),
        ("--max-batched-tokens", engine.max_batched_tokens),
        ("--block-size", engine.block_size),
        ("--drain-timeout", engine.drain_timeout_seconds),
        ("--scheduling-policy", engine.scheduling_policy),
    ]
    if spec.model.max_model_len is not None:
        options.append(("--max-model-len", spec.model.max_model_len))
    if engine.decode_step_target_ms is not None:
        options.append(("--decode-step-target-ms", f"{engine.decode_step_target_ms:g}"))
    args = [item for flag, value in options for item in (flag, str(value))]
    if not engine.prefix_caching:
        args.append("--no-prefix-caching")
    return args


def worker_deployment(
    owner: Owner,
    spec: InferenceDeploymentSpec,
    acc: AcceleratorSpec,
    replicas: int,
    settings: OperatorSettings,
) -> Manifest:
    labels = worker_selector(owner.name, acc.name)
    _, model_volume = model_location(spec.model.uri)
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if model_volume is not None:
        mounts.append({"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True})
        volumes.append(model_volume)
    gpus = {acc.resource_name: str(acc.count)}
    container = {
        "name": "worker",
        "image": settings.worker_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["tokenfleet-worker"],
        "args": worker_args(spec, acc),
        "env": pod_ip_env(),
        "ports": [{"name": "http", "containerPort": WORKER_PORT, "protocol": "TCP"}],
        "resources": {"requests": gpus, "limits": gpus},
        # Model loading can take minutes: the startup probe holds liveness off until the server answers.
        "startupProbe": http_probe("/health", 5, 120),
        "readinessProbe": http_probe("/ready", 2, 2),
        "livenessProbe": http_probe("/health", 10, 3),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": spec.engine.drain_timeout_seconds + DRAIN_MARGIN_SECONDS,
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": volumes,
        "tolerations": [{"key": acc.resource_name, "operator": "Exists", "effect": "NoSchedule"}],
    }
    if acc.node_selector:
        pod_spec["nodeSelector"] = dict(acc.node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(owner, worker_deployment_name(owner.name, acc.name), labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            # Never drop below the current count during a rollout: capacity is what this fleet sells.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(WORKER_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def workers_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(owner, workers_service_name(owner.name), worker_selector(owner.name)),
        "spec": {
            "clusterIP": "None",
            "selector": worker_selector(owner.name),
            "ports": [{"name": "http", "port": WORKER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def router_labels(fleet: str) -> dict[str, str]:
    return {LABEL_DEPLOYMENT: fleet, LABEL_COMPONENT: "router"}


def router_deployment(owner: Owner, spec: InferenceDeploymentSpec, settings: OperatorSettings) -> Manifest:
    labels = router_labels(owner.name)
    key_args, key_mounts, key_volumes = _api_key_mounts(spec)
    container = {
        "name": "router",
        "image": settings.router_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["tokenfleet-router"],
        "args": [
            "--host",
            "$(POD_IP)",
            "--port",
            str(ROUTER_PORT),
            "--namespace",
            owner.namespace,
            "--selector",
            selector_string(worker_selector(owner.name)),
            "--worker-port",
            str(WORKER_PORT),
            "--strategy",
            spec.routing.strategy,
            "--session-header",
            spec.routing.session_header,
            *key_args,
        ],
        "env": pod_ip_env(),
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
        "readinessProbe": http_probe("/ready", 2, 2),
        "livenessProbe": http_probe("/health", 10, 3),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *key_mounts],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(owner, router_name(owner.name), labels),
        "spec": {
            "replicas": spec.routing.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": router_name(owner.name),
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}, *key_volumes],
                },
            },
        },
    }


def _api_key_mounts(spec: InferenceDeploymentSpec) -> tuple[list[str], list[Manifest], list[Manifest]]:
    """Router args, volume mounts and volumes for `spec.routing.apiKeysSecret` (nothing when unset)."""
    secret = spec.routing.api_keys_secret
    if secret is None:
        return [], [], []
    mount = {"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True}
    volume = {
        "name": "api-keys",
        "secret": {"secretName": secret, "items": [{"key": "api-keys", "path": "api-keys"}]},
    }
    return ["--api-keys-file", f"{API_KEYS_DIR}/api-keys"], [mount], [volume]


def router_service(owner: Owner) -> Manifest:
    labels = router_labels(owner.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(owner, router_name(owner.name), labels),
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def router_rbac(owner: Owner) -> list[Manifest]:
    """The router discovers workers by watching pods: a ServiceAccount, a Role and its binding."""
    name = router_name(owner.name)
    labels = router_labels(owner.name)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": object_metadata(owner, name, labels)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": object_metadata(owner, name, labels),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": object_metadata(owner, name, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    ]


def build_children(
    owner: Owner, spec: InferenceDeploymentSpec, replicas: Mapping[str, int], settings: OperatorSettings
) -> list[Manifest]:
    """Everything the fleet needs, workers sized by `replicas` per variant (0 for unnamed variants)."""
    workers = [
        worker_deployment(owner, spec, acc, int(replicas.get(acc.name, 0)), settings)
        for acc in spec.accelerators
    ]
    return [
        *router_rbac(owner),
        workers_service(owner),
        *workers,
        router_deployment(owner, spec, settings),
        router_service(owner),
    ]
