"""Fixtures for the operator's end-to-end tests: the CRD installed once, a tiny model, operator processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cluster
from tests.operator.kube_helpers import free_port, install_crd
from tokenfleet_devkit.process_stop import stop_gracefully


@dataclass(frozen=True)
class OperatorProcess:
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the operator's own /metrics samples matching `labels` (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return sum(
            float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def decisions(self) -> float:
        return sum(
            self.metric("tokenfleet_operator_scaling_decisions_total", direction=d)
            for d in ("up", "down", "hold", "rebalance")
        )


OperatorStarter = Callable[..., OperatorProcess]


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Cluster:
    install_crd(cluster)
    return cluster


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint with its tokenizer (sim workers read only the tokenizer)."""
    from tokenfleet_worker.make_model import make_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    make_model(path, preset="tiny")
    return path


@pytest.fixture
def operator_process(crd: Cluster, tmp_path: Path) -> Iterator[OperatorStarter]:
    """Start `tokenfleet-operator` for a namespace; every one started is stopped afterwards.

    `start(ns)` runs it `--standalone`; `start(ns, peering="name", priority=N)` runs it as a peer
    instead. Each operator's output goes to operator-N.log in the test's tmp_path.
    """
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(ns: str, peering: str | None = None, priority: int | None = None) -> OperatorProcess:
        path = tmp_path / f"operator-{len(started)}.log"
        log = open(path, "wb")  # noqa: SIM115 - closed in teardown
        logs.append(log)
        port = free_port()
        peers = ["--standalone"] if peering is None else ["--peering", peering]
        if priority is not None:
            peers += ["--priority", str(priority)]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tokenfleet_operator",
                *peers,
                "--namespace",
                ns,
                "--kubeconfig",
                str(crd.kubeconfig),
                "--metrics-port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        started.append(proc)
        return OperatorProcess(proc, port, path)

    yield start
    for proc in started:
        stop_gracefully(proc)
    for log in logs:
        log.close()
