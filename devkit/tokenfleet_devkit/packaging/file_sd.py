"""Prometheus scrape config fed by file-based service discovery (the Debian build has no Kubernetes SD).

Pure builders turn fleet pods (as the API returns them) into file-SD target groups carrying the labels
the dashboards select on — `namespace`, `infdep`, `variant`, `pod`, `component` — the same labels the
chart's PodMonitor sets through relabelling. `write_targets` replaces a file atomically, because
Prometheus re-reads it whenever it changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COMPONENT_LABEL = "tokenfleet.io/component"
DEPLOYMENT_LABEL = "tokenfleet.io/deployment"
VARIANT_LABEL = "tokenfleet.io/variant"
PORT_NAMES = {"worker": "http", "router": "http", "operator": "metrics"}
JOBS = {"worker": "tokenfleet-workers", "router": "tokenfleet-routers", "operator": "tokenfleet-operator"}

TargetGroup = dict[str, Any]


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _port(pod: Mapping[str, Any], name: str) -> int | None:
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    return None


def target_group(pod: Mapping[str, Any]) -> TargetGroup | None:
    """One target for a ready fleet pod with an IP and a named port; None for anything else."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    component = labels.get(COMPONENT_LABEL, "")
    ip = pod.get("status", {}).get("podIP")
    port = _port(pod, PORT_NAMES.get(component, "http"))
    if component not in PORT_NAMES or not ip or port is None or not _is_ready(pod):
        return None
    target_labels = {
        "namespace": meta.get("namespace", ""),
        "pod": meta.get("name", ""),
        "component": component,
    }
    if DEPLOYMENT_LABEL in labels:
        target_labels["infdep"] = labels[DEPLOYMENT_LABEL]
    if VARIANT_LABEL in labels:
        target_labels["variant"] = labels[VARIANT_LABEL]
    return {"targets": [f"{ip}:{port}"], "labels": target_labels}


def target_groups(pods: Iterable[Mapping[str, Any]], component: str) -> list[TargetGroup]:
    groups = (
        target_group(p)
        for p in pods
        if (p.get("metadata", {}).get("labels") or {}).get(COMPONENT_LABEL) == component
    )
    return sorted((g for g in groups if g is not None), key=lambda g: g["targets"][0])


def scrape_config(sd_dir: Path, interval: str = "2s", rule_files: Iterable[Path] = ()) -> dict[str, Any]:
    """A whole prometheus.yml: one job per component, each reading `<sd_dir>/<component>.json`."""
    jobs = []
    for component, job in JOBS.items():
        jobs.append(
            {
                "job_name": job,
                # The operator labels fleet gauges with the fleet's namespace: keep its labels.
                "honor_labels": component == "operator",
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(sd_dir / f"{component}.json")], "refresh_interval": "1s"}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


def write_targets(path: Path, groups: list[TargetGroup]) -> None:
    """Replace the file in one rename, so Prometheus never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(groups, out, indent=1)
    os.replace(tmp, path)
