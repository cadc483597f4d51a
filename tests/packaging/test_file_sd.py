"""File-SD targets carry the labels the dashboards select on; the scrape config passes promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenfleet_devkit.packaging import file_sd, sync

pytestmark = pytest.mark.unit


def pod(
    name: str,
    component: str,
    ip: str | None = "127.64.0.5",
    ready: bool = True,
    port_name: str = "http",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns1",
            "labels": {"tokenfleet.io/component": component, **(labels or {})},
        },
        "spec": {"containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": 8000}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_a_ready_worker_becomes_a_labelled_target() -> None:
    worker = pod(
        "chat-worker-h100-abc",
        "worker",
        labels={"tokenfleet.io/deployment": "chat", "tokenfleet.io/variant": "h100"},
    )
    assert file_sd.target_group(worker) == {
        "targets": ["127.64.0.5:8000"],
        "labels": {
            "namespace": "ns1",
            "pod": "chat-worker-h100-abc",
            "component": "worker",
            "infdep": "chat",
            "variant": "h100",
        },
    }


@pytest.mark.parametrize(
    "case",
    [
        pod("w", "worker", ready=False),
        pod("w", "worker", ip=None),
        pod("w", "worker", port_name="grpc"),
        pod("w", "smoke"),
    ],
)
def test_unready_unaddressed_unnamed_port_or_foreign_pods_are_skipped(case: dict[str, Any]) -> None:
    assert file_sd.target_group(case) is None


def test_groups_select_one_component_in_a_stable_order() -> None:
    pods = [pod("b", "worker", ip="127.64.0.9"), pod("r", "router"), pod("a", "worker", ip="127.64.0.2")]
    groups = file_sd.target_groups(pods, "worker")
    assert [g["labels"]["pod"] for g in groups] == ["a", "b"]


def test_write_targets_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "worker.json"
    file_sd.write_targets(path, [{"targets": ["127.0.0.1:1"], "labels": {}}])
    file_sd.write_targets(path, [])
    assert json.loads(path.read_text()) == []
    assert [p.name for p in path.parent.iterdir()] == ["worker.json"]


def test_promtool_accepts_the_generated_config(tmp_path: Path) -> None:
    for component in file_sd.JOBS:
        file_sd.write_targets(tmp_path / f"{component}.json", [])
    config = file_sd.scrape_config(tmp_path, rule_files=[sync.ALERTS])
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["tokenfleet-operator"]["honor_labels"] is True
    assert jobs["tokenfleet-workers"]["honor_labels"] is False
