"""Helpers shared by the packaging tests: run helm from the pinned build, render the chart, read manifests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenfleet_devkit.cluster import versions
from tokenfleet_devkit.packaging import sync

CHART = sync.CHART
MANIFESTS = sync.REPO / "manifests"


def helm_binary() -> Path:
    path = versions.bin_dir() / "helm"
    if not path.exists():
        found = shutil.which("helm")
        if not found:
            pytest.fail(f"helm is not built yet ({path}); run `tokenfleet cluster build`", pytrace=False)
        return Path(found)
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def set_flags(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def render(
    *extra: str, values: dict[str, str] | None = None, namespace: str = "tokenfleet-system"
) -> list[dict[str, Any]]:
    out = helm(
        "template", "tf", str(CHART), "--namespace", namespace, *set_flags(values or {}), *extra
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def manifest_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def normalized_rules(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Rules as (group, resource, verb) triples, so equal grants compare equal however they are grouped."""
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
