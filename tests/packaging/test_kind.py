"""`tokenfleet kind up --dry-run`: the generated kind config and the command sequence."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenfleet_devkit.packaging import kind, sync

pytestmark = pytest.mark.unit


def dry_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], list[list[str]]]:
    assert kind.main(["up", "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    config_text, _, commands_text = out.partition("# commands\n")
    return yaml.safe_load(config_text), [shlex.split(line) for line in commands_text.splitlines()]


def test_config_has_a_control_plane_and_labelled_gpu_workers(capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = dry_run(capsys, "--gpu-nodes", "3")
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    nodes = config["nodes"]
    assert [n["role"] for n in nodes] == ["control-plane", "worker", "worker", "worker"]
    patch = yaml.safe_load(nodes[1]["kubeadmConfigPatches"][0])
    labels = patch["nodeRegistration"]["kubeletExtraArgs"]["node-labels"]
    assert "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3" in labels
    assert (
        "nvidia.com/gpu.product=NVIDIA-L40S"
        in yaml.safe_load(nodes[2]["kubeadmConfigPatches"][0])["nodeRegistration"]["kubeletExtraArgs"][
            "node-labels"
        ]
    )


def test_commands_create_build_load_patch_install_then_apply(capsys: pytest.CaptureFixture[str]) -> None:
    _, steps = dry_run(capsys, "--gpu-nodes", "2", "--tag", "dev")
    verbs = [" ".join(s[:2]) if s[0] != "kubectl" else f"kubectl {s[3]}" for s in steps]
    assert verbs == ["kind create"] + ["docker build"] * 3 + ["kind load"] * 3 + ["kubectl patch"] * 2 + [
        "helm upgrade",
        "kubectl apply",
    ]
    loads = [s[3] for s in steps if s[:2] == ["kind", "load"]]
    assert loads == [f"ghcr.io/tokenfleet/{p}:dev" for p in ("operator", "worker", "router")]
    for step in steps:
        if step[:2] == ["docker", "build"]:
            assert Path(step[step.index("-f") + 1]).is_file(), "each image has its Dockerfile"
    patch = next(s for s in steps if "patch" in s)
    assert patch[patch.index("patch") + 2] == "tokenfleet-worker"
    ops = json.loads(patch[-1])
    assert {o["path"] for o in ops} == {
        "/status/capacity/nvidia.com~1gpu",
        "/status/allocatable/nvidia.com~1gpu",
    }
    helm = next(s for s in steps if s[0] == "helm")
    assert str(sync.CHART) in helm and "image.tag=dev" in helm and "--wait" in helm
    assert steps[-1][-1].endswith("manifests/samples/inferencedeployment.yaml")


def test_no_sample_and_cuda_worker_flags(capsys: pytest.CaptureFixture[str]) -> None:
    _, steps = dry_run(capsys, "--no-sample", "--cuda-worker")
    assert steps[-1][0] == "helm"
    worker_build = next(s for s in steps if s[:2] == ["docker", "build"] and "worker" in s[3])
    assert "--build-arg" not in worker_build


def test_bad_sizes_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert kind.main(["up", "--dry-run", "--gpu-nodes", "0"]) == 2
    assert "--gpu-nodes" in capsys.readouterr().err


def test_images_match_the_chart_and_dockerfiles() -> None:
    values = yaml.safe_load((sync.CHART / "values.yaml").read_text())
    plan = kind.KindPlan()
    chart = yaml.safe_load((sync.CHART / "Chart.yaml").read_text())
    assert plan.tag == chart["appVersion"]
    for part in kind.IMAGES:
        key = "image" if part == "operator" else f"{part}Image"
        assert f"{values[key]['repository']}:{chart['appVersion']}" == plan.image(part)
        dockerfile = (sync.REPO / "docker" / f"{part}.Dockerfile").read_text()
        assert plan.image(part) in dockerfile, "the Dockerfile's build comment names the image"
        assert "USER 65532:65532" in dockerfile, "images run as a numeric non-root user"
        assert f'ENTRYPOINT ["tokenfleet-{part}"]' in dockerfile
