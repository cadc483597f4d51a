"""`tokenfleet kind up`: a kind cluster with fake GPU nodes, the three images, the chart and the sample.

For users with Docker (kind cannot run on machines without a Docker engine; the local control plane
serves there). `--dry-run` prints the generated kind config and the command sequence without running
anything. The plan is built by pure functions; only `run_plan` executes.

Fake GPUs: a kind node advertises no `nvidia.com/gpu` unless the NVIDIA device plugin runs on it. The
plan patches each worker node's status with GPU capacity (Kubernetes' documented way to advertise an
extended resource), as the kwok nodes of the local control plane do, so the scheduler places GPU
pods; the containers get no real GPU, which suits `engine.backend: sim`. A kubelet restart drops the
patch: run `tokenfleet kind up` again, or install the device plugin on real GPU nodes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
IMAGES = ("operator", "worker", "router")
GPU_PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class KindPlan:
    name: str = "tokenfleet"
    gpu_nodes: int = 2
    gpus_per_node: int = 8
    tag: str = "0.1.0"
    registry: str = "ghcr.io/tokenfleet"
    namespace: str = "tokenfleet-system"
    cpu_worker_image: bool = True  # a CPU-only torch keeps the worker image small for fake GPUs
    apply_sample: bool = True

    def image(self, part: str) -> str:
        return f"{self.registry}/{part}:{self.tag}"

    def node_name(self, index: int) -> str:
        # kind names worker nodes <cluster>-worker, <cluster>-worker2, ...
        return f"{self.name}-worker" if index == 0 else f"{self.name}-worker{index + 1}"

    def product(self, index: int) -> str:
        return GPU_PRODUCTS[index % len(GPU_PRODUCTS)]


def kind_config(plan: KindPlan) -> dict[str, Any]:
    """One control-plane node and `gpu_nodes` workers labelled like GPU nodes (alternating products)."""
    nodes: list[dict[str, Any]] = [{"role": "control-plane"}]
    for i in range(plan.gpu_nodes):
        labels = f"nvidia.com/gpu.product={plan.product(i)},nvidia.com/gpu.count={plan.gpus_per_node}"
        nodes.append(
            {
                "role": "worker",
                "kubeadmConfigPatches": [
                    yaml.safe_dump(
                        {
                            "kind": "JoinConfiguration",
                            "nodeRegistration": {"kubeletExtraArgs": {"node-labels": labels}},
                        }
                    )
                ],
            }
        )
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": plan.name, "nodes": nodes}


def gpu_patch(plan: KindPlan) -> str:
    """A JSON patch adding fake `nvidia.com/gpu` capacity to a node's status (`~1` escapes the slash)."""
    ops = [
        {"op": "add", "path": f"/status/{field}/nvidia.com~1gpu", "value": str(plan.gpus_per_node)}
        for field in ("capacity", "allocatable")
    ]
    return json.dumps(ops)


def commands(plan: KindPlan, config_path: Path, repo: Path = REPO) -> list[list[str]]:
    """Every command `kind up` runs, in order."""
    kube = ["--context", f"kind-{plan.name}"]
    steps: list[list[str]] = [
        ["kind", "create", "cluster", "--name", plan.name, "--config", str(config_path)]
    ]
    for part in IMAGES:
        build = ["docker", "build", "-f", str(repo / "docker" / f"{part}.Dockerfile"), "-t", plan.image(part)]
        if part == "worker" and plan.cpu_worker_image:
            build += ["--build-arg", f"TORCH_INDEX={CPU_TORCH_INDEX}"]
        steps.append([*build, str(repo)])
    steps += [["kind", "load", "docker-image", plan.image(p), "--name", plan.name] for p in IMAGES]
    for i in range(plan.gpu_nodes):
        steps.append(
            [
                "kubectl",
                *kube,
                "patch",
                "node",
                plan.node_name(i),
                "--subresource=status",
                "--type=json",
                "-p",
                gpu_patch(plan),
            ]
        )
    steps.append(
        [
            "helm",
            "upgrade",
            "--install",
            "tokenfleet",
            str(repo / "charts" / "tokenfleet"),
            "--kube-context",
            f"kind-{plan.name}",
            "--namespace",
            plan.namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
            "--set",
            f"image.tag={plan.tag}",
            "--set",
            f"workerImage.tag={plan.tag}",
            "--set",
            f"routerImage.tag={plan.tag}",
        ]
    )
    if plan.apply_sample:
        steps.append(
            [
                "kubectl",
                *kube,
                "apply",
                "-n",
                "default",
                "-f",
                str(repo / "manifests" / "samples" / "inferencedeployment.yaml"),
            ]
        )
    return steps


def run_plan(steps: list[list[str]]) -> int:
    for step in steps:
        print(f"+ {shlex.join(step)}", flush=True)
        code = subprocess.run(step, check=False).returncode
        if code != 0:
            print(f"error: `{step[0]} {step[1]}` failed with exit code {code}", file=sys.stderr)
            return code
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenfleet kind", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["up"])
    p.add_argument("--name", default=KindPlan.name, help="kind cluster name")
    p.add_argument("--gpu-nodes", type=int, default=KindPlan.gpu_nodes, help="worker nodes with fake GPUs")
    p.add_argument("--gpus-per-node", type=int, default=KindPlan.gpus_per_node)
    p.add_argument("--tag", default=KindPlan.tag, help="image tag to build and install")
    p.add_argument("--cuda-worker", action="store_true", help="build the worker with CUDA torch (large)")
    p.add_argument("--no-sample", action="store_true", help="do not apply the sample InferenceDeployment")
    p.add_argument("--dry-run", action="store_true", help="print the kind config and commands; run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.gpu_nodes < 1 or args.gpus_per_node < 1:
        print("error: --gpu-nodes and --gpus-per-node must be at least 1", file=sys.stderr)
        return 2
    plan = KindPlan(
        name=args.name,
        gpu_nodes=args.gpu_nodes,
        gpus_per_node=args.gpus_per_node,
        tag=args.tag,
        cpu_worker_image=not args.cuda_worker,
        apply_sample=not args.no_sample,
    )
    config = yaml.safe_dump(kind_config(plan), sort_keys=False)
    if args.dry_run:
        config_path = Path(tempfile.gettempdir()) / f"kind-{plan.name}.yaml"
        print(f"# kind config ({config_path})\n{config}# commands")
        for step in commands(plan, config_path):
            print(shlex.join(step))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "kind.yaml"
        config_path.write_text(config)
        return run_plan(commands(plan, config_path))


if __name__ == "__main__":
    sys.exit(main())
