"""Test harness: markers, the shared local cluster, and helpers every part's tests use.

The cluster is brought up once per session (built first if needed) under its own name, so a
developer's `tokenfleet cluster up` is never disturbed. Tests that need it fail, not skip, when it
cannot start: a broken control plane must turn CI red.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tokenfleet_devkit.cluster import control_plane

# Overridable so two checkouts can run their suites side by side without sharing a cluster.
TEST_CLUSTER = os.environ.get("TOKENFLEET_TEST_CLUSTER", "tokenfleet-test")


@dataclass(frozen=True)
class Cluster:
    paths: control_plane.Paths

    @property
    def kubeconfig(self) -> Path:
        return self.paths.kubeconfig

    @property
    def bin(self) -> Path:
        return self.paths.bin

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin / "kubectl"), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin / "helm"), *args], capture_output=True, text=True, env=self.env(), timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    @contextlib.contextmanager
    def namespace(self, prefix: str = "t") -> Iterator[str]:
        """A fresh namespace for one test, deleted afterwards (children go with it)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "gpu" in item.keywords:
            try:
                import torch

                has_cuda = torch.cuda.is_available()
            except ImportError:
                has_cuda = False
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs CUDA; this machine has no GPU"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    paths = control_plane.Paths.default(TEST_CLUSTER)
    try:
        control_plane.up(say=lambda line: print(f"[cluster] {line}", flush=True), paths=paths)
    except Exception as err:
        pytest.fail(f"the local control plane could not start: {err}", pytrace=False)
    yield Cluster(paths)
    if os.environ.get("TOKENFLEET_KEEP_CLUSTER") != "1":
        control_plane.down(say=lambda line: None, paths=paths)
