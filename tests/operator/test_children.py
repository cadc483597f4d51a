"""Child object builders: names, labels, selectors, pod security, probes, owner references."""

from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_operator.child_meta import Owner
from tokenfleet_operator.children import build_children, model_location, worker_deployment
from tokenfleet_operator.resource import SCHEDULING_POLICIES, InvalidSpec, parse_spec
from tokenfleet_operator.settings import OperatorSettings
from tokenfleet_worker.admission import POLICIES

pytestmark = pytest.mark.unit

OWNER = Owner(name="chat", namespace="ml", uid="1234")
SETTINGS = OperatorSettings(worker_image="reg/worker:1", router_image="reg/router:1")
SPEC_RAW: dict[str, Any] = {
    "model": {"name": "chat", "uri": "pvc://models/llama-3-8b", "maxModelLen": 8192},
    "engine": {"maxNumSeqs": 128, "drainTimeoutSeconds": 90},
    "accelerators": [
        {"name": "h100", "hourlyCost": 4.0, "nodeSelector": {"nvidia.com/gpu.product": "H100"}},
        {"name": "l4", "hourlyCost": 0.8, "resourceName": "nvidia.com/gpu", "count": 2},
    ],
    "routing": {"strategy": "prefix-affinity", "replicas": 3},
}
SPEC = parse_spec(SPEC_RAW)


def _by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_builds_every_child_with_owner_references() -> None:
    objects = _by_kind_name(build_children(OWNER, SPEC, {"h100": 2}, SETTINGS))
    assert set(objects) == {
        ("ServiceAccount", "chat-router"),
        ("Role", "chat-router"),
        ("RoleBinding", "chat-router"),
        ("Service", "chat-workers"),
        ("Deployment", "chat-worker-h100"),
        ("Deployment", "chat-worker-l4"),
        ("Deployment", "chat-router"),
        ("Service", "chat-router"),
    }
    for obj in objects.values():
        assert obj["metadata"]["namespace"] == "ml"
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == "1234" and ref["kind"] == "InferenceDeployment" and ref["controller"] is True
    assert objects[("Deployment", "chat-worker-h100")]["spec"]["replicas"] == 2
    assert objects[("Deployment", "chat-worker-l4")]["spec"]["replicas"] == 0


def test_worker_pod_spec() -> None:
    dep = worker_deployment(OWNER, SPEC, SPEC.accelerators[1], 3, SETTINGS)
    labels = {
        "tokenfleet.io/deployment": "chat",
        "tokenfleet.io/variant": "l4",
        "tokenfleet.io/component": "worker",
    }
    assert dep["spec"]["selector"]["matchLabels"] == labels
    assert dep["spec"]["template"]["metadata"]["labels"] == labels
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 90
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "reg/worker:1" and container["command"] == ["tokenfleet-worker"]
    args = container["args"]
    assert args[args.index("--host") + 1] == "$(POD_IP)"
    assert args[args.index("--model") + 1] == "/models/llama-3-8b"
    assert args[args.index("--served-model-name") + 1] == "chat"
    assert args[args.index("--max-num-seqs") + 1] == "128"
    assert args[args.index("--max-model-len") + 1] == "8192"
    assert "--no-prefix-caching" not in args
    assert "--decode-step-target-ms" not in args  # unset: the worker fills its chunks
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"} == container["resources"]["requests"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] and not sec["allowPrivilegeEscalation"]
    assert sec["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert "nodeSelector" not in pod


def test_node_selector_and_probe_ports() -> None:
    dep = worker_deployment(OWNER, SPEC, SPEC.accelerators[0], 1, SETTINGS)
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    ports = {p["name"] for p in pod["containers"][0]["ports"]}
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["port"] in ports


def test_router_targets_the_workers() -> None:
    objects = _by_kind_name(build_children(OWNER, SPEC, {}, SETTINGS))
    router = objects[("Deployment", "chat-router")]
    assert router["spec"]["replicas"] == 3
    pod = router["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "chat-router"
    args = pod["containers"][0]["args"]
    assert args[args.index("--namespace") + 1] == "ml"
    assert (
        args[args.index("--selector") + 1] == "tokenfleet.io/component=worker,tokenfleet.io/deployment=chat"
    )
    assert args[args.index("--strategy") + 1] == "prefix-affinity"
    service = objects[("Service", "chat-router")]
    assert service["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    headless = objects[("Service", "chat-workers")]
    assert headless["spec"]["clusterIP"] == "None"
    role = objects[("Role", "chat-router")]
    assert role["rules"][0]["resources"] == ["pods"] and "watch" in role["rules"][0]["verbs"]


def test_router_reads_api_keys_from_the_named_secret_as_a_file() -> None:
    raw = {**SPEC_RAW, "routing": {"strategy": "least-load", "apiKeysSecret": "chat-keys"}}
    objects = _by_kind_name(build_children(OWNER, parse_spec(raw), {}, SETTINGS))
    pod = objects[("Deployment", "chat-router")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    key_file = container["args"][container["args"].index("--api-keys-file") + 1]
    mount = next(m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "chat-keys"
    assert key_file.endswith("/" + volume["secret"]["items"][0]["path"])
    # Keys never travel as env vars, where `kubectl describe` and crash dumps would show them.
    assert all("secretKeyRef" not in str(env) for env in container.get("env", []))


def test_router_without_api_keys_secret_has_no_key_file() -> None:
    objects = _by_kind_name(build_children(OWNER, SPEC, {}, SETTINGS))
    container = objects[("Deployment", "chat-router")]["spec"]["template"]["spec"]["containers"][0]
    assert "--api-keys-file" not in container["args"]


@pytest.mark.parametrize(
    ("uri", "path", "has_volume"),
    [
        ("pvc://models/llama/8b", "/models/llama/8b", True),
        ("pvc://models", "/models", True),
        ("file:///srv/models/tiny", "/srv/models/tiny", False),
        ("hf://org/name", "hf://org/name", False),
    ],
)
def test_model_location(uri: str, path: str, has_volume: bool) -> None:
    got_path, volume = model_location(uri)
    assert got_path == path and (volume is not None) == has_volume


def test_builders_are_deterministic() -> None:
    assert build_children(OWNER, SPEC, {"h100": 1}, SETTINGS) == build_children(
        OWNER, SPEC, {"h100": 1}, SETTINGS
    )


def test_decode_step_target_reaches_every_variant() -> None:
    raw = {**SPEC_RAW, "engine": {**SPEC_RAW.get("engine", {}), "decodeStepTargetMs": 80}}
    spec = parse_spec(raw)
    for acc in spec.accelerators:
        args = worker_deployment(OWNER, spec, acc, 1, SETTINGS)["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
        assert args[args.index("--decode-step-target-ms") + 1] == "80"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [({}, "fcfs"), ({"schedulingPolicy": "shortest-prompt-first"}, "shortest-prompt-first")],
)
def test_scheduling_policy_reaches_the_worker(raw: dict[str, str], expected: str) -> None:
    spec = parse_spec({**SPEC_RAW, "engine": {**SPEC_RAW.get("engine", {}), **raw}})
    acc = spec.accelerators[0]
    args = worker_deployment(OWNER, spec, acc, 1, SETTINGS)["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert args[args.index("--scheduling-policy") + 1] == expected


def test_unknown_scheduling_policy_names_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.engine\.schedulingPolicy"):
        parse_spec({**SPEC_RAW, "engine": {"schedulingPolicy": "lifo"}})


def test_the_operator_offers_exactly_the_worker_policies() -> None:
    assert SCHEDULING_POLICIES == POLICIES
