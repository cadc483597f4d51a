from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_devkit.launcher.pod_process import PodSpecError, expand, process_spec, ready_status

pytestmark = pytest.mark.unit


def pod(**container: Any) -> dict[str, Any]:
    base = {"name": "worker", "image": "tokenfleet/worker:dev", "command": ["tokenfleet-worker"]}
    return {
        "metadata": {"name": "w-1", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
        "spec": {"containers": [{**base, **container}], "terminationGracePeriodSeconds": 45},
        "status": {"podIP": "127.64.0.7"},
    }


def no_lookup(kind: str, name: str, key: str) -> str | None:
    return {"secret": {("keys", "k"): "s3cret"}}.get(kind, {}).get((name, key))


@pytest.mark.parametrize(
    ("text", "env", "want"),
    [
        ("--host $(POD_IP)", {"POD_IP": "127.0.0.9"}, "--host 127.0.0.9"),
        ("$(MISSING)", {}, "$(MISSING)"),
        ("$$(POD_IP)", {"POD_IP": "x"}, "$(POD_IP)"),
        ("a$(A)b$(B)", {"A": "1", "B": "2"}, "a1b2"),
    ],
)
def test_expand_follows_kubelet_rules(text: str, env: dict[str, str], want: str) -> None:
    assert expand(text, env) == want


def test_downward_api_env_and_args_expand_to_the_pod_ip() -> None:
    spec = process_spec(
        pod(
            args=["--host", "$(POD_IP)", "--port", "8000", "--name", "$(NAME)"],
            env=[
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "k"}}},
            ],
        ),
        no_lookup,
        {"PATH": "/bin"},
    )
    assert spec.argv == ("tokenfleet-worker", "--host", "127.64.0.7", "--port", "8000", "--name", "x")
    assert spec.env["KEY"] == "s3cret" and spec.env["PATH"] == "/bin"
    assert spec.grace_seconds == 45 and spec.pod_key == "ns/w-1"


def test_secret_volume_becomes_local_files_that_arguments_point_at() -> None:
    spec_pod = pod(
        args=["--api-keys-file", "/etc/keys/api-keys"],
        volumeMounts=[{"name": "keys", "mountPath": "/etc/keys", "readOnly": True}],
    )
    spec_pod["spec"]["volumes"] = [
        {"name": "keys", "secret": {"secretName": "keys", "items": [{"key": "k", "path": "api-keys"}]}}
    ]
    spec = process_spec(spec_pod, no_lookup, {}, "/run/pods/ns_w-1")
    assert spec.argv[-1] == "/run/pods/ns_w-1/keys/api-keys"
    assert spec.files == {"/run/pods/ns_w-1/keys/api-keys": "s3cret"}


def test_missing_secret_for_a_volume_is_refused_naming_it() -> None:
    spec_pod = pod(volumeMounts=[{"name": "keys", "mountPath": "/etc/keys"}])
    spec_pod["spec"]["volumes"] = [
        {"name": "keys", "secret": {"secretName": "gone", "items": [{"key": "k", "path": "api-keys"}]}}
    ]
    with pytest.raises(PodSpecError, match="secret gone/k not found"):
        process_spec(spec_pod, no_lookup, {}, "/run/pods/x")


def test_named_probe_port_resolves_through_container_ports() -> None:
    spec = process_spec(
        pod(
            ports=[{"name": "http", "containerPort": 8000}],
            readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2},
        ),
        no_lookup,
        {},
    )
    assert spec.readiness is not None
    assert spec.readiness.url == "http://127.64.0.7:8000/ready"
    assert spec.liveness is None


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"command": []}, "command"),
        ({"readinessProbe": {"exec": {"command": ["true"]}}}, "readinessProbe"),
        ({"readinessProbe": {"httpGet": {"port": "nope"}}}, "httpGet.port"),
        ({"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}, "absent"),
        ({"env": [{"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "spec.volumes"}}}]}, "fieldPath"),
    ],
)
def test_unrunnable_pods_are_refused_with_the_field_named(container: dict[str, Any], field: str) -> None:
    with pytest.raises(PodSpecError, match=field.replace(".", r"\.")):
        process_spec(pod(**container), no_lookup, {})


def test_ready_status_reports_terminated_exit_code() -> None:
    spec = process_spec(pod(), no_lookup, {})
    body = ready_status(spec, ready=False, running=False, restarts=2, now="t", exit_code=3)
    status = body["status"]["containerStatuses"][0]
    assert status["restartCount"] == 2 and status["state"]["terminated"]["exitCode"] == 3
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]} == {
        "Ready": "False",
        "ContainersReady": "False",
    }
