"""Fixtures for the operator's end-to-end tests: the CRD installed once, operator processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import Cluster
from tests.operator.kube_helpers import free_port, install_crd


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Cluster:
    install_crd(cluster)
    return cluster


@pytest.fixture
def operator_process(crd: Cluster, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start `tokenfleet-operator --standalone` for a namespace; every one started is stopped afterwards.

    Each operator's output goes to operator-N.log in the test's tmp_path.
    """
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(ns: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"operator-{len(started)}.log", "wb")  # noqa: SIM115 - closed in teardown
        logs.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tokenfleet_operator",
                "--standalone",
                "--namespace",
                ns,
                "--kubeconfig",
                str(crd.kubeconfig),
                "--metrics-port",
                str(free_port()),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    for log in logs:
        log.close()
